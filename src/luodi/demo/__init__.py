"""`luodi demo`: the lifecycle on the bundled sample enterprise; see luodi.demo.run."""

from luodi.demo.data import DemoStep, examples_dir, run_data
from luodi.demo.run import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "DemoStep", "examples_dir", "run_data", "run_demo"]
