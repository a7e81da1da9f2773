"""images/: the step images' Dockerfiles, parsed (no Docker engine here): official bases, the torch and
DeePMD-kit pair that scripts/bootstrap.sh builds, lamflow installed from its wheel, the entry point the
rendered templates call, and tags that match what `lamflow render` writes by default."""

from __future__ import annotations

import re

import pytest
import tomllib
from dockerfile_parse import DockerfileParser

from lamflow.workflows.argo.render import default_image, render
from tests.conftest import REPO

IMAGES = REPO / "images"
VARIANTS = ("cuda", "cpu")


def bootstrap_pin(name: str) -> str:
    match = re.search(rf'^{name}="([^"]+)"', (REPO / "scripts" / "bootstrap.sh").read_text(), re.M)
    assert match, f"scripts/bootstrap.sh has no {name}"
    return match.group(1)


def parsed(variant: str) -> DockerfileParser:
    return DockerfileParser(fileobj=(IMAGES / f"Dockerfile.{variant}").open("rb"))


def stages(parser: DockerfileParser) -> list[list[dict]]:
    """Instructions grouped by stage (a FROM starts one); global ARGs before the first FROM dropped."""
    found: list[list[dict]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if found and instruction["instruction"] != "COMMENT":
            found[-1].append(instruction)
    return found


def arg_defaults(parser: DockerfileParser) -> dict[str, str]:
    return {
        key: value
        for i in parser.structure
        if i["instruction"] == "ARG" and "=" in i["value"]
        for key, value in [i["value"].split("=", 1)]
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_and_deepmd_kit_match_the_bootstrap_pair(variant):
    args = arg_defaults(parsed(variant))
    assert args["TORCH_VERSION"] == bootstrap_pin("TORCH_VERSION")
    assert args["DEEPMD_VERSION"] == bootstrap_pin("DEEPMD_VERSION")
    text = (IMAGES / f"Dockerfile.{variant}").read_text()
    assert '"deepmd-kit==${DEEPMD_VERSION}"' in text and "--no-binary deepmd-kit" in text, (
        "built from the sdist"
    )
    assert "DP_ENABLE_PYTORCH=1" in text and f"DP_VARIANT={variant}" in text


def test_bases_are_official_pytorch_and_python_images():
    cuda = parsed("cuda").parent_images
    torch = bootstrap_pin("TORCH_VERSION")
    assert cuda == [
        f"pytorch/pytorch:{torch}-cuda12.8-cudnn9-devel",
        f"pytorch/pytorch:{torch}-cuda12.8-cudnn9-runtime",
    ]
    cpu = parsed("cpu")
    assert cpu.parent_images == ["python:3.11-slim-bookworm"] * 2
    runtime = stages(cpu)[-1]
    (torch_install,) = [i["value"] for i in runtime if i["instruction"] == "RUN" and "torch==" in i["value"]]
    assert '"torch==${TORCH_VERSION}"' in torch_install
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_install


@pytest.mark.parametrize("variant", VARIANTS)
def test_runtime_stage_has_wheels_only_a_non_root_user_and_python3_entry_point(variant):
    runtime = stages(parsed(variant))[-1]
    copies = [i["value"] for i in runtime if i["instruction"] in ("COPY", "ADD")]
    assert copies == ["--from=build /wheels /tmp/wheels", "dist/lamflow-*.whl /tmp/wheels/"], (
        "no lamflow source (ops/, workflows/) is shipped: steps import the installed wheel"
    )
    installs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    assert "/tmp/wheels/lamflow-*.whl" in installs and "e3nn" in installs and "ase" in installs
    assert "import deepmd.pt, lamflow.ops.pretrain, dpdata, ase" in installs, "the image checks itself"
    # the label-dft step's PySCF labeler runs in this image: lamflow's `dft` extra, checked at build
    assert '"$(echo /tmp/wheels/lamflow-*.whl)[dft]"' in installs
    assert "pyscf, lamflow.ops.labeling.pyscf_dft" in installs
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("pyscf") for req in extras["dft"])
    (entrypoint,) = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"]
    assert entrypoint == '["python3"]'
    (user,) = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert user != "root" and user != "0"
    labels = " ".join(i["value"] for i in runtime if i["instruction"] == "LABEL")
    assert 'org.opencontainers.image.version="${LAMFLOW_VERSION}"' in labels


def test_rendered_templates_call_what_the_image_provides_and_default_tags_match_build_sh():
    build = (IMAGES / "build.sh").read_text()
    assert '-t "lamflow-ops:$VERSION-$v"' in build
    for profile, variant in (("gpu", "cuda"), ("cpu", "cpu")):
        assert default_image(profile).endswith(f"-{variant}")
        assert (IMAGES / f"Dockerfile.{variant}").exists()
    from lamflow.workflows import api
    from lamflow.workflows.settings import Settings

    resolved, plan = api.validate(REPO / "examples" / "demo.yaml")
    from lamflow.workflows.argo.render import SpecIdentity

    manifest = render(plan, resolved.spec.resources, Settings(image="i"), SpecIdentity("demo", "", "0" * 64))
    commands = {tuple(t["script"]["command"]) for t in manifest["spec"]["templates"] if "script" in t}
    assert commands == {("python3",)}


def test_docker_build_context_is_only_the_wheels():
    assert (REPO / ".dockerignore").read_text().split("\n")[1:3] == ["*", "!dist/"]


def test_the_labeler_image_adds_lamflows_label_step_to_a_dft_image():
    """images/Dockerfile.labeler: FROM the user's DFT image, lamflow's wheel in a venv first on PATH,
    checked at build by importing the label step, the entry point the templates call; no torch."""
    parser = DockerfileParser(fileobj=(IMAGES / "Dockerfile.labeler").open("rb"))
    froms = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
    assert froms == ["${DFT_IMAGE}"]
    text = (IMAGES / "Dockerfile.labeler").read_text()
    assert "lamflow-*.whl" in text and "import lamflow.ops.label_dft" in text
    assert "torch" not in text.replace("neither torch", "")
    assert "ENV PATH=/opt/lamflow/bin:${PATH}" in text and 'ENTRYPOINT ["python3"]' in text
    build = (REPO / "images" / "build.sh").read_text()
    assert "images/Dockerfile.labeler" in build and "DFT_IMAGE=" in build


def test_the_label_step_imports_without_torch_deepmd_kit_or_pyscf():
    """What makes the labeler image small: the command labeler's step needs none of them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('torch', 'deepmd', 'pyscf'): sys.modules[m] = None\n"
        "import lamflow.ops.label_dft, lamflow.ops.merge_labels\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
