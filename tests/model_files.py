"""Caffe (prototxt + caffemodel) and ONNX files of small convolutional networks, written with
protobuf alone: neither caffe nor the onnx package is installed here, so the few messages needed
are declared below (same field numbers as caffe.proto and onnx.proto, so the bytes are the real
formats) and built with google.protobuf's dynamic message classes.

A network here is: input "image" (1, 3, H, W) -> one Convolution per (name, weight, bias) in
`convs`, all reading "image" -> Concat along channels -> "net_output" (OpenPose's last layer is a
Concat named net_output too).
"""
from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _T.TYPE_STRING, "bytes": _T.TYPE_BYTES, "int64": _T.TYPE_INT64,
            "int32": _T.TYPE_INT32, "uint32": _T.TYPE_UINT32, "float": _T.TYPE_FLOAT}

# message -> fields (name, number, type, label); label "*" repeated, "*p" repeated packed.
_CAFFE = {
    "BlobShape": [("dim", 1, "int64", "*p")],
    "BlobProto": [("shape", 7, "BlobShape", ""), ("data", 5, "float", "*p")],
    "LayerParameter": [("name", 1, "string", ""), ("type", 2, "string", ""), ("bottom", 3, "string", "*"),
                       ("top", 4, "string", "*"), ("blobs", 7, "BlobProto", "*")],
    "NetParameter": [("name", 1, "string", ""), ("layer", 100, "LayerParameter", "*")],
}
_ONNX = {
    "OperatorSetIdProto": [("domain", 1, "string", ""), ("version", 2, "int64", "")],
    "Dimension": [("dim_value", 1, "int64", ""), ("dim_param", 2, "string", "")],   # TensorShapeProto.Dimension
    "TensorShapeProto": [("dim", 1, "Dimension", "*")],
    "TensorType": [("elem_type", 1, "int32", ""), ("shape", 2, "TensorShapeProto", "")],  # TypeProto.Tensor
    "TypeProto": [("tensor_type", 1, "TensorType", "")],
    "ValueInfoProto": [("name", 1, "string", ""), ("type", 2, "TypeProto", "")],
    "TensorProto": [("dims", 1, "int64", "*"), ("data_type", 2, "int32", ""), ("name", 8, "string", ""),
                    ("raw_data", 9, "bytes", "")],
    "AttributeProto": [("name", 1, "string", ""), ("i", 3, "int64", ""), ("ints", 8, "int64", "*"),
                       ("type", 20, "int32", "")],
    "NodeProto": [("input", 1, "string", "*"), ("output", 2, "string", "*"), ("name", 3, "string", ""),
                  ("op_type", 4, "string", ""), ("attribute", 5, "AttributeProto", "*")],
    "GraphProto": [("node", 1, "NodeProto", "*"), ("name", 2, "string", ""), ("initializer", 5, "TensorProto", "*"),
                   ("input", 11, "ValueInfoProto", "*"), ("output", 12, "ValueInfoProto", "*")],
    "ModelProto": [("ir_version", 1, "int64", ""), ("producer_name", 2, "string", ""), ("graph", 7, "GraphProto", ""),
                   ("opset_import", 8, "OperatorSetIdProto", "*")],
}


def _classes(package: str, spec: dict) -> dict:
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    for message, fields in spec.items():
        m = fdp.message_type.add(name=message)
        for name, number, kind, label in fields:
            f = m.field.add(name=name, number=number,
                            label=_T.LABEL_REPEATED if label.startswith("*") else _T.LABEL_OPTIONAL)
            if kind in _SCALARS:
                f.type = _SCALARS[kind]
            else:
                f.type, f.type_name = _T.TYPE_MESSAGE, f".{package}.{kind}"
            if label == "*p":
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {m: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{m}")) for m in spec}


_caffe = _classes("edn_test_caffe", _CAFFE)
_onnx = _classes("edn_test_onnx", _ONNX)


def caffe_files(convs: list[tuple[str, np.ndarray, np.ndarray]], stride: int) -> tuple[bytes, bytes]:
    """-> (prototxt text, caffemodel bytes)."""
    lines = ['name: "edn_test_openpose"', 'input: "image"'] + [f"input_dim: {d}" for d in (1, 3, stride, stride)]
    for name, weight, _ in convs:
        lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "image" top: "{name}" '
                     f"convolution_param {{ num_output: {weight.shape[0]} kernel_size: {weight.shape[2]} "
                     f"stride: {stride} }} }}")
    bottoms = " ".join(f'bottom: "{name}"' for name, _, _ in convs)
    lines.append(f'layer {{ name: "net_output" type: "Concat" {bottoms} top: "net_output" '
                 'concat_param { axis: 1 } }')
    net = _caffe["NetParameter"](name="edn_test_openpose")
    for name, weight, bias in convs:
        layer = net.layer.add(name=name, type="Convolution", bottom=["image"], top=[name])
        for array in (weight, bias):
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(np.asarray(array, np.float32).ravel().tolist())
    net.layer.add(name="net_output", type="Concat", bottom=[n for n, _, _ in convs], top=["net_output"])
    return "\n".join(lines).encode() + b"\n", net.SerializeToString()


def onnx_file(convs: list[tuple[str, np.ndarray, np.ndarray]], stride: int) -> bytes:
    """-> ONNX model bytes (opset 13, input height and width dynamic)."""
    m = _onnx
    graph = m["GraphProto"](name="edn_test_openpose")
    for name, weight, bias in convs:
        for suffix, array in (("_w", weight), ("_b", bias)):
            graph.initializer.add(name=name + suffix, dims=array.shape, data_type=1,   # FLOAT
                                  raw_data=np.asarray(array, "<f4").tobytes())
        node = graph.node.add(name=name, op_type="Conv", input=["image", name + "_w", name + "_b"], output=[name])
        node.attribute.add(name="kernel_shape", ints=list(weight.shape[2:]), type=7)  # INTS
        node.attribute.add(name="strides", ints=[stride, stride], type=7)
    concat = graph.node.add(name="net_output", op_type="Concat", input=[n for n, _, _ in convs], output=["net_output"])
    concat.attribute.add(name="axis", i=1, type=2)  # INT

    def value_info(name, dims):
        v = m["ValueInfoProto"](name=name)
        v.type.tensor_type.elem_type = 1
        for d in dims:
            dim = v.type.tensor_type.shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d
        return v

    graph.input.append(value_info("image", (1, 3, "height", "width")))
    channels = sum(w.shape[0] for _, w, _ in convs)
    graph.output.append(value_info("net_output", (1, channels, "height8", "width8")))
    model = m["ModelProto"](ir_version=7, producer_name="edn-tests", graph=graph)
    model.opset_import.add(domain="", version=13)
    return model.SerializeToString()
