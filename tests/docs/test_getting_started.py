"""docs/getting-started.md stays true to the code: the node labels and the taint it names are the
ones the operator reads and tolerates, and the chart default it says is unpublished is the chart's
(its catalogue table is checked with placement.md's in tests/cli/test_catalogue_doc.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gridplace_operator import labels
from gridplace_operator.api.inference_deployment import (
    DEFAULT_IMAGE,
    GpuPerformance,
    InferenceDeployment,
)
from gridplace_operator.api.region import Region
from gridplace_operator.reconcile.children import Owner, desired_deployment
from gridplace_placement.profiles import catalogue

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "getting-started.md"


def yaml_blocks(text: str) -> list[str]:
    return [part.split("```", 1)[0] for part in text.split("```yaml\n")[1:]]


def test_the_example_model_validates_and_gets_the_toleration_the_page_names() -> None:
    text = DOC.read_text()
    for name in (labels.NODE_REGION, labels.NODE_GPU_PRODUCT, labels.GPU_RESOURCE):
        assert f"`{name}`" in text
    (manifest,) = [yaml.safe_load(b) for b in yaml_blocks(text) if "kind: InferenceDeployment" in b]
    idep = InferenceDeployment.model_validate(manifest)
    owner = Owner(namespace="serving", name=idep.metadata.name, uid="u", spec=idep.spec)
    deployment = desired_deployment(
        owner,
        region="dc-frankfurt",
        gpu_type="NVIDIA-H100-80GB-HBM3",
        replicas=1,
        node_selector={labels.NODE_REGION: "dc-frankfurt"},
    )
    assert deployment["metadata"]["name"] == "llama-8b-chat-dc-frankfurt"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert "key `nvidia.com/gpu`, any value,\neffect `NoSchedule`" in text
    assert pod["nodeSelector"] == {
        "topology.kubernetes.io/region": "dc-frankfurt",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert pod["containers"][0]["image"] == DEFAULT_IMAGE
    assert f"`{DEFAULT_IMAGE}`" in text
    # The model is one the page's catalogue table lists.
    assert idep.spec.model.name in catalogue()


def test_the_example_region_validates() -> None:
    (manifest,) = [yaml.safe_load(b) for b in yaml_blocks(DOC.read_text()) if "kind: Region" in b]
    Region.model_validate(manifest)


def test_the_chart_default_image_is_the_one_the_page_calls_unpublished() -> None:
    values = yaml.safe_load((ROOT / "charts/gridplace/values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "charts/gridplace/Chart.yaml").read_text())
    text = " ".join(DOC.read_text().split())
    repository, version = values["image"]["repository"], chart["appVersion"]
    assert f"`{repository}` at the chart's `appVersion` (`{version}`)" in text
    assert f"-t registry.example.com/platform/gridplace-operator:{version} ." in text


def test_the_performance_entry_shown_is_valid() -> None:
    text = DOC.read_text()
    block = text.split("       performance:\n         gpus:\n", 1)[1].split("```", 1)[0]
    entries = yaml.safe_load(block)
    assert len(entries) == 1
    GpuPerformance.model_validate(entries[0])
