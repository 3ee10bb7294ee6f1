"""The parts of the cluster tool that need no cluster: topology files, build settings, names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridplace_e2e.cluster.build import helm_ldflags, kubernetes_ldflags
from gridplace_e2e.cluster.cli import main as cluster_cli
from gridplace_e2e.cluster.local import ClusterError, LocalCluster, abandoned_clusters
from gridplace_e2e.cluster.topology import (
    DEFAULT_TOPOLOGY,
    FRAGMENTED_TOPOLOGY,
    GPU_RESOURCE,
    PRODUCT_LABEL,
    REGION_LABEL,
    TopologyError,
    load_topology,
    parse_topology,
)

SCENARIO_REGIONS = [
    "us-east-1",
    "us-west-1",
    "eu-central-1",
    "ap-northeast-1",
    "ap-southeast-1",
    "ap-southeast-2",
]


def test_default_topology_covers_the_scenario_regions_with_a_gpu_mix() -> None:
    topology = load_topology(DEFAULT_TOPOLOGY)
    assert topology.regions == SCENARIO_REGIONS
    products = {pool.product for pool in topology.pools}
    assert products == {"NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB", "NVIDIA-L40S"}
    for region in SCENARIO_REGIONS:
        nodes = sum(pool.nodes for pool in topology.pools if pool.region == region)
        assert 2 <= nodes <= 4, region
    names = [node["metadata"]["name"] for node in topology.node_manifests()]
    assert len(names) == len(set(names))


def test_node_manifest_labels_and_resources() -> None:
    topology = parse_topology(
        {"regions": {"eu-central-1": [{"product": "NVIDIA-L40S", "nodes": 2, "gpusPerNode": 4}]}}
    )
    first, second = topology.node_manifests()
    assert first["metadata"]["name"] == "eu-central-1-l40s-0"
    assert second["metadata"]["name"] == "eu-central-1-l40s-1"
    labels = first["metadata"]["labels"]
    assert labels[REGION_LABEL] == "eu-central-1"
    assert labels[PRODUCT_LABEL] == "NVIDIA-L40S"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert labels["type"] == "kwok"
    assert first["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert first["status"]["allocatable"] == {
        "cpu": "96",
        "memory": "1024Gi",
        "pods": "110",
        GPU_RESOURCE: "4",
    }
    assert first["status"]["capacity"] == first["status"]["allocatable"]
    assert "taints" not in first["spec"]
    assert topology.gpus("eu-central-1") == 8
    assert topology.gpus("eu-central-1", "NVIDIA-H100-80GB-HBM3") == 0


def pool(**fields: object) -> dict[str, object]:
    return {"regions": {"us-east-1": [{"product": "NVIDIA-L40S", "nodes": 1, **fields}]}}


@pytest.mark.parametrize(
    ("document", "field", "value"),
    [
        ([], "top level", "[]"),
        ({"regions": {}, "extra": 1}, "top level", "'extra'"),
        ({"regions": {}}, "regions", "{}"),
        ({"regions": {"US_East": [{"product": "x", "nodes": 1}]}}, "regions", "'US_East'"),
        ({"regions": {"us-east-1": []}}, "regions.us-east-1", "[]"),
        ({"regions": {"us-east-1": ["gpu"]}}, "regions.us-east-1[0]", "'gpu'"),
        ({"regions": {"us-east-1": [{"nodes": 1}]}}, "regions.us-east-1[0].product", "'nodes'"),
        (pool(nodes=0), "regions.us-east-1[0].nodes", "0"),
        (pool(nodes="two"), "regions.us-east-1[0].nodes", "'two'"),
        (pool(nodes=True), "regions.us-east-1[0].nodes", "True"),
        (pool(gpusPerNode=-8), "regions.us-east-1[0].gpusPerNode", "-8"),
        (pool(memory="lots"), "regions.us-east-1[0].memory", "'lots'"),
        (pool(cpu="1.5.2"), "regions.us-east-1[0].cpu", "'1.5.2'"),
        (pool(product="NVIDIA L40S"), "regions.us-east-1[0].product", "'NVIDIA L40S'"),
        (pool(gpus=8), "regions.us-east-1[0].gpus", "'gpus'"),
        (
            {
                "regions": {
                    "us-east-1": [{"product": "A", "nodes": 1}, {"product": "A", "nodes": 2}]
                }
            },
            "regions.us-east-1[1].product",
            "'A'",
        ),
    ],
)
def test_bad_topology_names_the_field_and_the_value(
    document: object, field: str, value: str
) -> None:
    with pytest.raises(TopologyError) as raised:
        parse_topology(document, source="bad.yaml")
    message = str(raised.value)
    assert message.startswith(f"bad.yaml: {field}: ")
    assert value in message


def test_unreadable_or_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"missing\.yaml: cannot read"):
        load_topology(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("regions: [unclosed\n")
    with pytest.raises(TopologyError, match=r"broken\.yaml: not valid YAML"):
        load_topology(broken)


def test_version_stamps() -> None:
    kube = kubernetes_ldflags("v1.34.4")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.34.4" in kube
        assert f"-X {package}.gitMajor=1" in kube
        assert f"-X {package}.gitMinor=34" in kube
    helm = helm_ldflags("v3.21.4", "v1.34.4")
    assert "-X helm.sh/helm/v3/internal/version.version=v3.21.4" in helm
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34" in helm


@pytest.mark.parametrize("name", ["", "Demo", "a/b", "../x", "-x", "x" * 41])
def test_cluster_names_are_checked(name: str, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="cluster name"):
        LocalCluster(name, root=tmp_path)


def test_cli_status_and_down_of_an_unknown_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--workdir", str(tmp_path), "--name", "never-started"]
    assert cluster_cli([*root, "status"]) == 3
    assert "not running" in capsys.readouterr().out
    assert cluster_cli([*root, "down"]) == 0


def test_abandoned_test_clusters_are_found_by_their_dead_owner(tmp_path: Path) -> None:
    for name in ("gridplace-test-999999999", "gridplace-test-999999999-b", "gridplace-demo"):
        (tmp_path / "clusters" / name).mkdir(parents=True)
    (tmp_path / "kwok" / "clusters" / f"gridplace-test-{os.getpid()}").mkdir(parents=True)
    assert abandoned_clusters("gridplace-test", root=tmp_path) == [
        "gridplace-test-999999999",
        "gridplace-test-999999999-b",
    ]


def test_fragmented_topology_has_split_and_tainted_nodes() -> None:
    """Nodes too small for a 4-GPU replica beside a 4-GPU node, and a tainted node."""
    topology = load_topology(FRAGMENTED_TOPOLOGY)
    nodes = {m["metadata"]["name"]: m for m in topology.node_manifests()}
    gpus = {n: int(m["status"]["allocatable"][GPU_RESOURCE]) for n, m in nodes.items()}
    assert sorted(g for n, g in gpus.items() if n.startswith("us-east-1")) == [2, 3]
    assert sorted(g for n, g in gpus.items() if n.startswith("us-west-1")) == [1, 4]
    tainted = [n for n, m in nodes.items() if m["spec"].get("taints")]
    assert tainted == ["eu-central-1-h100-80gb-hbm3-0"]
    assert nodes[tainted[0]]["spec"]["taints"] == [
        {"key": "dedicated", "value": "inference", "effect": "NoSchedule"}
    ]


def test_pools_of_one_product_need_names_and_taints_need_known_effects() -> None:
    pool = {"product": "NVIDIA-L40S", "nodes": 1}
    with pytest.raises(TopologyError, match="without a name"):
        parse_topology({"regions": {"r": [pool, pool]}})
    assert len(parse_topology({"regions": {"r": [pool, {**pool, "name": "b"}]}}).pools) == 2
    with pytest.raises(TopologyError, match="taints"):
        parse_topology({"regions": {"r": [{**pool, "taints": [{"key": "k", "effect": "No"}]}]}})
