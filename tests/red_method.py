"""A method whose score map is known without a model: the red channel / 255 (used with layout_files.write_red_scenes)."""
import numpy as np

from oodbench.methods import Method, MethodOutput


class Red(Method):
    name = "red"

    def __init__(self, seed: int = 0):  # created through the registry, which passes a seed
        self.seed = seed

    def predict(self, images):
        return MethodOutput(images[..., 0].astype(np.float32) / 255)
