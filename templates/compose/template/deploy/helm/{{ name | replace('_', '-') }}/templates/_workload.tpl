{{/*
The Deployment and the Service of one component:
(dict "root" $ "key" <dns name> "component" <its values> "megaservice" bool).
*/}}
{{- define "opea.deployment" -}}
{{- $root := .root -}}
{{- $component := .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "opea.componentName" . }}
  labels:
    {{- include "opea.labels" . | nindent 4 }}
spec:
  {{- if not $component.autoscaling.enabled }}
  replicas: {{ $component.replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "opea.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "opea.labels" . | nindent 8 }}
    spec:
      # No service links: Kubernetes would otherwise add <SERVICE>_SERVICE_HOST/_PORT/_PORT variables
      # for every Service of the namespace, next to the *_SERVICE_HOST_IP/_PORT wiring below.
      enableServiceLinks: false
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .key }}
          image: {{ include "opea.image" . | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          {{- with $component.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http
              containerPort: {{ $component.port }}
              protocol: TCP
          env:
            {{- include "opea.env" . | trim | nindent 12 }}
          startupProbe:
            httpGet:
              path: {{ $component.health.liveness }}
              port: http
            {{- include "opea.probeTimings" (dict "root" $root "component" $component "kind" "startup") | nindent 12 }}
          livenessProbe:
            httpGet:
              path: {{ $component.health.liveness }}
              port: http
            {{- include "opea.probeTimings" (dict "root" $root "component" $component "kind" "liveness") | nindent 12 }}
          readinessProbe:
            httpGet:
              path: {{ $component.health.readiness }}
              port: http
            {{- include "opea.probeTimings" (dict "root" $root "component" $component "kind" "readiness") | nindent 12 }}
          resources:
            {{- toYaml $component.resources | nindent 12 }}
          securityContext:
            {{- include "opea.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $component.server }}
            - name: model-cache
              mountPath: /data
            - name: shm
              mountPath: /dev/shm
            {{- end }}
      volumes:
        # The root file system is read-only: /tmp is the one writable place (and /data for a model server).
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.tmpSizeLimit }}
        {{- if $component.server }}
        - name: model-cache
          {{- if $component.modelCache.existingClaim }}
          persistentVolumeClaim:
            claimName: {{ $component.modelCache.existingClaim }}
          {{- else }}
          emptyDir:
            sizeLimit: {{ $component.modelCache.sizeLimit }}
          {{- end }}
        - name: shm
          emptyDir:
            medium: Memory
            sizeLimit: {{ $component.shmSizeLimit }}
        {{- end }}
      {{- with $component.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $component.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $component.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{- define "opea.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "opea.componentName" . }}
  labels:
    {{- include "opea.labels" . | nindent 4 }}
spec:
  type: {{ .component.serviceType | default "ClusterIP" }}
  selector:
    {{- include "opea.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .component.port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "opea.hpa" -}}
{{- $autoscaling := .component.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "opea.componentName" . }}
  labels:
    {{- include "opea.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "opea.componentName" . }}
  minReplicas: {{ $autoscaling.minReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}

{{- define "opea.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "opea.componentName" . }}
  labels:
    {{- include "opea.labels" . | nindent 4 }}
spec:
  {{- if hasKey .component.podDisruptionBudget "minAvailable" }}
  minAvailable: {{ .component.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .component.podDisruptionBudget.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "opea.selectorLabels" . | nindent 6 }}
{{- end -}}
