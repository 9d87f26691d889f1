"""Specs of pipelines: YAML files parsed into pure data, every part with its position."""
from nfpipe.spec.pipeline import (
                                  EdgeSpec,
                                  NodeSpec,
                                  PipelineErrors,
                                  PipelineSpec,
                                  Problem,
                                  parse_pipeline,
)
from nfpipe.yamldoc import Doc, Pos, load, load_file

__all__ = ["PipelineSpec", "NodeSpec", "EdgeSpec", "Problem", "PipelineErrors",
           "parse_pipeline", "Doc", "Pos", "load", "load_file"]
