{{/*
Helpers of the chart. Every template here is generic: it loops over
.Values.services (a map keyed by the service's DNS name) and
.Values.megaservice; only values.yaml and the per-hardware values files are
rendered from the project's answers by opea-new.
*/}}

{{/* The release's base name: the release name, with the chart's appended unless it already holds it. */}}
{{- define "opea.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The Deployment and Service name of one component: (dict "root" $ "key" <dns name>). */}}
{{- define "opea.componentName" -}}
{{- printf "%s-%s" (include "opea.fullname" .root) .key | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "opea.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .key }}
{{- end -}}

{{- define "opea.labels" -}}
{{ include "opea.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "opea.fullname" .root }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* A component's image: its published `ref` as written, else <image.registry>/<repository>:<tag>. */}}
{{- define "opea.image" -}}
{{- $image := .component.image -}}
{{- if $image.ref -}}
{{- $image.ref -}}
{{- else -}}
{{- $global := .root.Values.image -}}
{{- $tag := $image.tag | default $global.tag | toString -}}
{{- if $global.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $global.registry) $image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The web UI's values, when the chart has one (ui.enabled), with the megaservice's image unless ui.image is set;
an empty dict otherwise. */}}
{{- define "opea.ui" -}}
{{- $ui := .Values.ui | default dict -}}
{{- if $ui.enabled -}}
{{- $ui = deepCopy $ui -}}
{{- if not $ui.image }}{{ $_ := set $ui "image" (deepCopy .Values.megaservice.image) }}{{ end -}}
{{- toYaml $ui -}}
{{- else -}}
{{- toYaml dict -}}
{{- end -}}
{{- end -}}

{{/* no_proxy of every container: the user's, this machine, and every Service of the release. */}}
{{- define "opea.noProxy" -}}
{{- $root := . -}}
{{- $hosts := list -}}
{{- with .Values.proxy.no_proxy }}{{ $hosts = append $hosts . }}{{ end -}}
{{- $hosts = concat $hosts (list "localhost" "127.0.0.1" ".svc" ".cluster.local") -}}
{{- $hosts = append $hosts (include "opea.componentName" (dict "root" $root "key" "megaservice")) -}}
{{- range $key, $_ := .Values.services -}}
{{- $hosts = append $hosts (include "opea.componentName" (dict "root" $root "key" $key)) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* Environment every container gets: the proxies (as compose passes them). */}}
{{- define "opea.proxyEnv" -}}
- name: http_proxy
  value: {{ .Values.proxy.http_proxy | quote }}
- name: https_proxy
  value: {{ .Values.proxy.https_proxy | quote }}
- name: no_proxy
  value: {{ include "opea.noProxy" . | quote }}
{{- end -}}

{{/*
A component's own settings: `env` (plain values; a name that looks like a
secret is refused: those belong in the Secret) and `secretEnv` (variable →
key of the Secret named by secrets.existingSecret; left out when no Secret is
named, which is what an empty value in compose's .env means).
*/}}
{{- define "opea.settingsEnv" -}}
{{- $root := .root -}}
{{- range $name, $value := .component.env }}
{{- if regexMatch "(?i)(TOKEN|PASSWORD|SECRET|API_KEY|APIKEY|PRIVATE_KEY)" $name }}
{{- fail (printf "%s.env.%s looks like a secret: put it in the Secret named by secrets.existingSecret and list it under secretEnv" $.key $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with $root.Values.secrets.existingSecret }}
{{- $secret := . }}
{{- range $name, $key := $.component.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- end -}}

{{/* The environment of one container: (dict "root" $ "key" <dns name> "component" <values> "megaservice" bool
"ui" bool). */}}
{{- define "opea.env" -}}
{{- $root := .root -}}
{{- if .ui }}
{{- /* The web UI: where it listens, and the megaservice and every node (beside the flow too) at their Services. */}}
- name: UI_HOST
  value: "0.0.0.0"
- name: UI_PORT
  value: {{ .component.port | toString | quote }}
- name: MEGA_SERVICE_HOST_IP
  value: {{ include "opea.componentName" (dict "root" $root "key" "megaservice") | quote }}
- name: MEGA_SERVICE_PORT
  value: {{ $root.Values.megaservice.port | toString | quote }}
{{- range $key, $service := $root.Values.services }}
- name: {{ printf "%s_SERVICE_HOST_IP" $service.envPrefix }}
  value: {{ include "opea.componentName" (dict "root" $root "key" $key) | quote }}
- name: {{ printf "%s_SERVICE_PORT" $service.envPrefix }}
  value: {{ $service.port | toString | quote }}
{{- end }}
- name: LOGFLAG
  value: {{ $root.Values.logflag | toString | quote }}
{{- else if .megaservice }}
- name: MEGA_SERVICE_HOST
  value: "0.0.0.0"
- name: MEGA_SERVICE_PORT
  value: {{ .component.port | toString | quote }}
- name: LOGFLAG
  value: {{ $root.Values.logflag | toString | quote }}
{{- range $key, $service := $root.Values.services }}
{{- if not $service.besideTheFlow }}
- name: {{ printf "%s_SERVICE_HOST_IP" $service.envPrefix }}
  value: {{ include "opea.componentName" (dict "root" $root "key" $key) | quote }}
- name: {{ printf "%s_SERVICE_PORT" $service.envPrefix }}
  value: {{ $service.port | toString | quote }}
{{- if $service.server }}
- name: {{ printf "%s_MODEL_ID" $service.envPrefix }}
  value: {{ $service.modelId | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- else if .component.server }}
{{- /* A model server: its model, and every cache on the /data volume (the root file system is read-only). */}}
- name: MODEL_ID
  value: {{ .component.modelId | toString | quote }}
- name: HF_HUB_CACHE
  value: "/data"
- name: HOME
  value: "/data"
{{- else }}
- name: HOST
  value: "0.0.0.0"
- name: PORT
  value: {{ .component.port | toString | quote }}
- name: LOGFLAG
  value: {{ $root.Values.logflag | toString | quote }}
{{- if .component.documents }}
{{- include "opea.documentsEnv" . }}
{{- end }}
{{- end }}
{{ include "opea.proxyEnv" $root }}
{{- include "opea.settingsEnv" . }}
{{- end -}}

{{/* The timings of one probe kind ("startup", "liveness", "readiness"): the chart's, with the component's on top. */}}
{{- define "opea.probeTimings" -}}
{{- $timings := deepCopy (get .root.Values.probes .kind) -}}
{{- with .component.probes }}{{ with get . $.kind }}{{ $timings = mergeOverwrite $timings (deepCopy .) }}{{ end }}{{ end -}}
{{- toYaml $timings -}}
{{- end -}}

{{/* The hardened container securityContext, with a component's own overrides on top. */}}
{{- define "opea.containerSecurityContext" -}}
{{- $context := deepCopy .root.Values.securityContext -}}
{{- with .component.securityContext }}{{ $context = mergeOverwrite $context (deepCopy .) }}{{ end -}}
{{- toYaml $context -}}
{{- end -}}


{{/*
Where a dataprep service stores documents and the retrievers search them: the
pgvector server of templates/pgvector.yaml (its password from the chart's Secret),
or documents.existingSecret's PG_CONNECTION_STRING. A dataprep service also gets
the address of the embedding node it embeds with (`embeddingNode`).
*/}}
{{- define "opea.documentsEnv" -}}
{{- $root := .root }}
- name: VECTOR_STORE
  value: "pgvector"
{{- if $root.Values.documents.existingSecret }}
- name: PG_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.documents.existingSecret }}
      key: PG_CONNECTION_STRING
      optional: true  # missing: the services say so (503 naming the store) and recover once it is there
{{- else }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "opea.componentName" (dict "root" $root "key" "pgvector") }}
      key: POSTGRES_PASSWORD
- name: PG_CONNECTION_STRING
  value: {{ printf "postgresql://opea:$(POSTGRES_PASSWORD)@%s:5432/vectordb" (include "opea.componentName" (dict "root" $root "key" "pgvector")) | quote }}
{{- end }}
{{- with .component.embeddingNode }}
{{- $node := get $root.Values.services . }}
- name: {{ printf "%s_SERVICE_HOST_IP" $node.envPrefix }}
  value: {{ include "opea.componentName" (dict "root" $root "key" .) | quote }}
- name: {{ printf "%s_SERVICE_PORT" $node.envPrefix }}
  value: {{ $node.port | toString | quote }}
{{- end }}
{{- end -}}
