"""Deployment of SAIP backbones and their downstream models: ONNX export and onnxruntime checks.

``onnx``, ``onnxscript`` and ``onnxruntime`` are optional dependencies
(``requirements/deploy.txt``); they are imported when a function needs them, so
``import saip_mm`` works without them.
"""
from .inputs import image_paths, model_inputs, normalize, read_rgb
from .onnx_export import (EXPORT_KINDS, ExportSpec, build_export_model, check_onnx, export_onnx,
                          infer_kind, max_abs_diff, ort_session, run_onnx, simplify_onnx)

__all__ = [
    'EXPORT_KINDS', 'ExportSpec', 'build_export_model', 'check_onnx', 'export_onnx', 'infer_kind',
    'max_abs_diff', 'ort_session', 'run_onnx', 'simplify_onnx', 'image_paths', 'model_inputs',
    'normalize', 'read_rgb'
]
