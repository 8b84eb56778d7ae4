# The extension module `python -m app.loops` compiles (app/loops.py has the code and the docstrings).
import numpy as np

def walk(
    x: np.ndarray,
    children: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    depths: np.ndarray,
) -> np.ndarray: ...
def scan(rows: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
def project(rows: np.ndarray, axes: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray: ...
