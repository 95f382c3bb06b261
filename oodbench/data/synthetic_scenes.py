"""Procedural drawing of the embedded benchmark's road scenes: Cityscapes-like classes, OoD objects of shapes and
textures absent from training, and COCO-like proxy objects; deterministic given the random generator."""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation

H, W = 128, 256
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 5, 8, 10, 11, 13
PROXY_SHAPES, PROXY_TEXTURES = ("ellipse", "triangle"), ("stripes",)
ANOMALY_SHAPES, ANOMALY_TEXTURES = ("star", "cross", "ring"), ("solid_unusual", "checkerboard")
ANOMALY_COLOURS = ((235, 0, 235), (0, 235, 235), (140, 255, 0), (255, 110, 0))
PROXY_COLOURS = ((240, 220, 40), (110, 40, 170), (255, 160, 190), (150, 60, 30), (30, 40, 120))
HAZARD_IDS, NON_HAZARD_ID, NON_HAZARD_SHARE = (2, 31), 33, 0.15
_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32)


def _rgb(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def _smooth_noise(rng: np.random.Generator, cell: int) -> np.ndarray:
    """Noise in [-1, 1] that varies over about ``cell`` pixels."""
    small = rng.uniform(-1, 1, (H // cell + 2, W // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((W, H), Image.BILINEAR))


def _box(cx: float, cy: float, r: float) -> tuple[slice, slice]:
    """The pixels within ``r`` (+1) of a centre, as slices clipped to the image."""
    return (slice(int(np.clip(cy - r - 1, 0, H)), int(np.clip(cy + r + 2, 0, H))),
            slice(int(np.clip(cx - r - 1, 0, W)), int(np.clip(cx + r + 2, 0, W))))


def _rotated(cx: float, cy: float, r: float, angle: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    box = _box(cx, cy, r)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx, dy = _XX[box] - np.float32(cx), _YY[box] - np.float32(cy)
    return box, dx * c + dy * s, dy * c - dx * s


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
    m = np.zeros((H, W), bool)
    box, u, v = _rotated(cx, cy, max(rx, ry), angle)
    m[box] = (u / np.float32(rx)) ** 2 + (v / np.float32(ry)) ** 2 <= 1
    return m


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return (_XX >= x0) & (_XX < x1) & (_YY >= y0) & (_YY < y1)


def draw_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """A road scene in float RGB with its Cityscapes train-id label."""
    fine = rng.standard_normal((H, W), dtype=np.float32)[..., None]
    hy = rng.uniform(0.36, 0.46) * H
    a = np.clip(_YY / np.float32(hy), 0, 1)[..., None]
    top, bottom = _rgb(70, 120, 200) + _rgb(*rng.normal(0, 15, 3)), _rgb(190, 210, 235) + _rgb(*rng.normal(0, 10, 3))
    img = top + (bottom - top) * a
    lab = np.full((H, W), SKY, np.uint8)
    kinds = {"sky", "road", "sidewalk", "vegetation", "lane_marking"}
    leaves = _rgb(55, 105, 40) * _rgb(*rng.uniform(0.8, 1.2, 3)) * (1 + 0.25 * _smooth_noise(rng, 3)[..., None] + 0.08 * fine)

    x = rng.uniform(-20, 0)
    while x < W:
        x1 = x + rng.uniform(18, 60)
        if rng.random() < 0.65:
            y0 = rng.uniform(3, hy - 6)
            box = (slice(int(np.ceil(y0)), int(np.ceil(hy + 1))), slice(max(0, int(np.ceil(x))), min(W, int(np.ceil(x1)))))
            colour = _rgb(*(rng.uniform(90, 200) * rng.uniform(0.85, 1.15, 3)))
            wx, wy = rng.uniform(5, 9), rng.uniform(6, 10)
            xx, yy = _XX[box], _YY[box]
            windows = ((xx - np.float32(x)) % wx > 0.45 * wx) & ((yy - np.float32(y0)) % wy > 0.5 * wy) & (yy < hy - 3)
            img[box], lab[box] = colour, BUILDING
            img[box][windows] = colour * 0.45 + _rgb(10, 15, 30)
            kinds.add("building")
        else:
            cx, cy, rx = (x + x1) / 2, hy - rng.uniform(8, 25), (x1 - x) / 2
            m = _ellipse(cx, cy, rx, rng.uniform(8, 22)) | (_rect(cx - 0.8 * rx, cx + 0.8 * rx, cy, hy + 1))
            np.copyto(img, leaves, where=m[..., None])
            lab[m] = VEGETATION
        x = x1

    ground = _YY >= hy
    np.copyto(img, leaves, where=ground[..., None])
    lab[ground] = VEGETATION
    t = np.clip((_YY - hy) / (H - hy), 0, 1)
    vx, tw = W / 2 + rng.uniform(-30, 30), rng.uniform(4, 14)
    lb, rb = rng.uniform(-60, 40), rng.uniform(W - 40, W + 60)
    left = vx - tw / 2 + (lb - vx + tw / 2) * t
    right = vx + tw / 2 + (rb - vx - tw / 2) * t
    sw = rng.uniform(20, 50)
    side = ground & (_XX >= left - sw * t - 1) & (_XX <= right + sw * t + 1)
    np.copyto(img, _rgb(165, 158, 150) * np.float32(rng.uniform(0.85, 1.1)) * (1 + 0.05 * fine), where=side[..., None])
    lab[side] = SIDEWALK
    road = ground & (_XX >= left) & (_XX <= right)
    np.copyto(img, _rgb(95, 95, 100) * np.float32(rng.uniform(0.75, 1.2)) * (1 + 0.06 * fine), where=road[..., None])
    lab[road] = ROAD
    hw, phase = 0.4 + 1.6 * t, rng.uniform()
    dashes = road & (t > 0.08) & (np.abs(_XX - (left + right) / 2) < hw) & ((0.8 / (t + 0.02) + phase) % 1 < 0.5)
    edges = road & (t > 0.08) & ((np.abs(_XX - left - 3 * t - 1) < hw) | (np.abs(_XX - right + 3 * t + 1) < hw))
    img[dashes | edges] = (225, 225, 215)

    geometry = lambda tb: (hy + tb * (H - hy), vx - tw / 2 + (lb - vx + tw / 2) * tb, vx + tw / 2 + (rb - vx - tw / 2) * tb)
    objects = []
    for _ in range(rng.integers(1, 5)):
        tb = rng.uniform(0.15, 0.9)
        yb, l, r = geometry(tb)
        objects.append((yb, "pole", (l - sw * tb / 2 if rng.random() < 0.5 else r + sw * tb / 2), tb))
    for _ in range(rng.integers(0, 4)):
        tb = rng.uniform(0.15, 0.85)
        yb, l, r = geometry(tb)
        objects.append((yb, "car", l + (r - l) * rng.uniform(0.1, 0.9), tb))
    for _ in range(rng.integers(0, 3)):
        tb = rng.uniform(0.2, 0.9)
        yb, l, r = geometry(tb)
        objects.append((yb, "person", (l - sw * tb / 2 if rng.random() < 0.5 else r + sw * tb / 2), tb))
    for yb, kind, cx, tb in sorted(objects, key=lambda o: o[0]):
        kinds.add(kind)
        if kind == "pole":
            hp, wp = 12 + 60 * tb, max(1.0, 3 * tb)
            m = _rect(cx - wp / 2, cx + wp / 2, yb - hp, yb)
            img[m], lab[m] = rng.uniform(80, 150), POLE
        elif kind == "car":
            w = 6 + 70 * tb
            h = 0.55 * w
            colour = np.array([(180, 30, 30), (30, 50, 140), (225, 225, 225), (25, 25, 25), (150, 150, 155)][rng.integers(5)])
            body, cabin = _rect(cx - w / 2, cx + w / 2, yb - 0.75 * h, yb - 0.1 * h), _rect(cx - 0.35 * w, cx + 0.35 * w, yb - h, yb - 0.7 * h)
            wheels = _ellipse(cx - 0.3 * w, yb - 0.15 * h, 0.16 * h, 0.16 * h) | _ellipse(cx + 0.3 * w, yb - 0.15 * h, 0.16 * h, 0.16 * h)
            img[body], img[cabin], img[wheels] = colour, (40, 55, 70), (20, 20, 20)
            lab[body | cabin | wheels] = CAR
        else:
            hp = 12 + 40 * tb
            torso, head = _ellipse(cx, yb - 0.4 * hp, 0.13 * hp, 0.38 * hp), _ellipse(cx, yb - 0.86 * hp, 0.1 * hp, 0.1 * hp)
            img[torso], img[head] = rng.uniform(20, 200, 3), (200, 160, 130)
            lab[torso | head] = PERSON
    return img, lab, kinds


def finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Per-image lighting, colour jitter and sensor noise."""
    gain = _rgb(*rng.uniform(0.9, 1.1, 3)) * np.float32(rng.uniform(0.7, 1.25))
    img = img * gain + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1.5, 5))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _anomaly_mask(shape: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    r, m = size / 2, np.zeros((H, W), bool)
    box, u, v = _rotated(cx, cy, r * 1.5, angle)
    rad = np.hypot(u, v)
    if shape == "star":
        m[box] = rad <= r * (0.55 + 0.45 * np.cos(5 * np.arctan2(v, u)))
    elif shape == "cross":
        arm = max(1.0, 0.3 * r)
        m[box] = ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    else:
        m[box] = (rad <= r) & (rad >= 0.5 * r)
    return m


def with_anomalies(rng: np.random.Generator, img: np.ndarray, lab: np.ndarray, n: int) -> tuple[np.ndarray, set[str]]:
    """Paint ``n`` anomalies fully inside the road; return the LostAndFound labelIds (0 ROI-out, 1 road, ids)."""
    free = lab == ROAD
    ids = free.astype(np.uint8)
    top = int(np.nonzero(free.any(axis=1))[0].min())
    kinds: set[str] = set()
    for _ in range(n):
        for _attempt in range(40):
            size = rng.uniform(6, 10) if rng.random() < 0.35 else rng.uniform(12, 30)
            cy = rng.uniform(top + size / 2 + 2, H - size / 2 - 2)
            row = np.nonzero(free[int(cy)])[0]
            if row.size < size + 4:
                continue
            cx = rng.uniform(row.min() + size / 2 + 1, row.max() - size / 2 - 1)
            shape, angle = ANOMALY_SHAPES[rng.integers(len(ANOMALY_SHAPES))], rng.uniform(0, np.pi)
            m = _anomaly_mask(shape, cx, cy, size, angle)
            grown = binary_dilation(m)
            if not m.any() or (grown & ~free).any():
                continue
            c1, c2 = rng.choice(len(ANOMALY_COLOURS), 2, replace=False)
            if rng.random() < 0.5:
                img[m], texture = ANOMALY_COLOURS[c1], "solid_unusual"
            else:
                cell = max(2.0, size / 4)
                checks = ((np.floor(_XX / cell) + np.floor(_YY / cell)) % 2 == 0)[..., None]
                img[m] = np.where(checks, ANOMALY_COLOURS[c1], ANOMALY_COLOURS[c2])[m]
                texture = "checkerboard"
            ids[m] = NON_HAZARD_ID if rng.random() < NON_HAZARD_SHARE else rng.integers(*HAZARD_IDS)
            free &= ~grown
            kinds |= {shape, texture}
            break
    return ids, kinds


def draw_proxy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """A textured random background with 1-4 striped ellipses/triangles; mask 254 on them."""
    img = np.stack([(_smooth_noise(rng, 48) + 1) * rng.uniform(40, 110) + 20 for _ in range(3)], -1)
    img += 12 * _smooth_noise(rng, 4)[..., None]
    mask = np.zeros((H, W), bool)
    kinds = set(PROXY_TEXTURES)
    for _ in range(rng.integers(1, 5)):
        shape, size = PROXY_SHAPES[rng.integers(2)], rng.uniform(16, 60)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        if shape == "ellipse":
            m = _ellipse(cx, cy, size / 2 * rng.uniform(0.5, 1), size / 2 * rng.uniform(0.5, 1), rng.uniform(0, np.pi))
        else:
            ang = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.5, 0.5, 3)
            px, py = cx + size / 2 * np.cos(ang), cy + size / 2 * np.sin(ang)
            sides = [(px[(i + 1) % 3] - px[i]) * (_YY - py[i]) - (py[(i + 1) % 3] - py[i]) * (_XX - px[i]) for i in range(3)]
            m = (sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)
        period, a = rng.uniform(3, 8), rng.uniform(0, np.pi)
        c1, c2 = rng.choice(len(PROXY_COLOURS), 2, replace=False)
        stripes = (((_XX * np.cos(a) + _YY * np.sin(a)) / period) % 1 < 0.5)[..., None]
        img[m] = np.where(stripes, PROXY_COLOURS[c1], PROXY_COLOURS[c2])[m]
        mask |= m
        kinds.add(shape)
    return img, np.where(mask, 254, 0).astype(np.uint8), kinds

