"""opea-new renders from exported template folders; the result must be exactly what copier renders from
the bundle (answers file included), or `copier update` would see differences that are not there."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opea_new import render, runtime_wheel
from opea_new.spec import load_pipeline
from opea_new.template_store import ensure_templates
from tests.update.helpers import DAG_SPEC


@pytest.fixture
def sources(tier, monkeypatch):
    for key, value in tier.env().items():
        monkeypatch.setenv(key, value)
    return ensure_templates()


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mode & 0o777)
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_every_template_renders_byte_for_byte_like_copier_from_the_bundle(sources, tmp_path):
    from copier import run_copy

    pipeline = load_pipeline(DAG_SPEC)
    service = pipeline.service("left")
    parts = [("megaservice", render.root_answers(pipeline), render.ROOT_ANSWERS),
             ("compose", render.compose_answers(pipeline), render.COMPOSE_ANSWERS),
             ("microservice", render.microservice_answers(pipeline, service), render.ROOT_ANSWERS)]
    with render.TemplateTrees(sources) as trees:
        for template, answers, answers_file in parts:
            ours, copiers = tmp_path / f"ours-{template}", tmp_path / f"copier-{template}"
            render.render_part(trees, render.RenderJob(template, sources[template].ref, ours, answers, answers_file))
            run_copy(sources[template].url, copiers, data=answers, vcs_ref=sources[template].ref,
                     answers_file=answers_file, defaults=True, overwrite=True, quiet=True)

            assert tree(ours) == tree(copiers), template
            if template == "megaservice":  # the release carries the runtime's wheel, as built
                name, data = runtime_wheel.build()
                assert tree(ours)[f"vendor/{name}"] == (data, 0o644)
            recorded = yaml.safe_load((ours / answers_file).read_text())
            assert recorded["_src_path"] == f"~/.cache/opea-new/templates/{template}.bundle"
            assert recorded["_commit"] == sources[template].ref


def test_user_owned_paths_come_from_the_templates(sources, tmp_path):
    pipeline = load_pipeline(DAG_SPEC)
    with render.TemplateTrees(sources) as trees:
        root = render.render_part(trees, render.RenderJob("megaservice", sources["megaservice"].ref,
                                                          tmp_path / "root", render.root_answers(pipeline)))
        service = render.render_part(trees, render.RenderJob(
            "microservice", sources["microservice"].ref, tmp_path / "svc",
            render.microservice_answers(pipeline, pipeline.service("left"))))
    assert root("megaservice/hooks.py") and not root("megaservice/pipeline.py")
    assert not root(f"vendor/{runtime_wheel.wheel_name()}")  # built by the release: never the user's
    assert service("app/backend.py") and not service("app/main.py")
    # The same answers as copier's own matcher, for every rendered path.
    from copier import run_copy

    worker = run_copy(sources["microservice"].url, tmp_path / "copier", vcs_ref=sources["microservice"].ref,
                      data=render.microservice_answers(pipeline, pipeline.service("left")), defaults=True,
                      quiet=True)
    for path in tree(tmp_path / "svc"):
        assert service(path) == bool(worker.match_skip(Path(path))), path


def test_a_tree_rendered_by_parallel_workers_equals_one_rendered_part_by_part(sources, tmp_path):
    services = "\n".join(f"  - {{name: s{i}, type: {kind}}}" for i, kind in
                         enumerate(["embedding", "retriever", "rerank", "llm", "guardrail", "undefined"] * 2))
    pipeline = load_pipeline(f"name: wide\nruntime: lite\nservices:\n{services}\n")
    ref = sources["megaservice"].ref
    with render.TemplateTrees(sources) as trees:
        render.render_tree(pipeline, tmp_path / "tree", trees, ref)
        serial = tmp_path / "serial"
        render.render_part(trees, render.RenderJob("megaservice", ref, serial, render.root_answers(pipeline)))
        render.render_part(trees, render.RenderJob("compose", ref, serial, render.compose_answers(pipeline),
                                                   render.COMPOSE_ANSWERS))
        for service in pipeline.services:
            render.render_part(trees, render.RenderJob("microservice", ref, serial / render.service_dir(service.name),
                                                       render.microservice_answers(pipeline, service)))
    assert tree(tmp_path / "tree") == tree(serial)
    assert len(list((tmp_path / "tree" / "services").iterdir())) == 12
