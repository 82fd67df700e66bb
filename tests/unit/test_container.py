"""The image's recipe, without a docker daemon: exact pins equal to the tested stack, image names."""

from __future__ import annotations

import re

import yaml

from adapters import container
from tests.helpers import ROOT


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
            assert match, f"{path.name}: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", match[1].lower())] = match[2]
    return pins


def test_the_image_pins_every_package_exactly_at_the_versions_the_suite_tests():
    served = _pins(ROOT / "bentos" / "requirements.txt")
    tested = _pins(ROOT / "requirements.txt")
    top_level = {
        re.sub(r"[-_.]+", "-", line.split("==")[0].lower())
        for line in (ROOT / "bentos" / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert top_level <= served.keys()
    assert len(served) > 3 * len(top_level), "transitive packages are pinned too"
    differ = {name: (v, tested.get(name)) for name, v in served.items() if tested.get(name) != v}
    assert differ == {}, "the image would serve other versions than the suite tests"


def test_the_bentofile_builds_on_a_local_base_with_the_offline_template():
    docker = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["docker"]
    assert docker["base_image"] == container.base_image() == container.DEFAULT_BASE
    template = (ROOT / docker["dockerfile_template"]).read_text()
    assert "FROM {{ __base_image__ }}-wheels" in template and "--no-index" in template
    assert "HEALTHCHECK" in template and "VOLUME" in template


def test_images_are_named_by_model_version_and_commit_and_builders_by_their_base():
    assert (
        container.image_tag("registry.local/churn", "7", "abc123")
        == "registry.local/churn:v7-abc123"
    )
    assert (
        container.builder_image("churn-serving-base:bookworm")
        == "churn-serving-base:bookworm-wheels"
    )
    assert container.builder_image("host:5000/py") == "host:5000/py-wheels"
