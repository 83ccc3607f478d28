"""Writes test/fixtures/augment-scipy.json: reference outputs of Keras's (keras-preprocessing
1.1.x) apply_affine_transform + flips, computed with scipy.ndimage.affine_transform(order=1), for
graft's augmentation tests. Run: python3 tools/augment-scipy-fixture.py (numpy + scipy >= 1.6)."""
import json
import numpy as np
import scipy
from scipy import ndimage


def keras_transform(x, theta, tx, ty, shear, zx, zy, flip_h, flip_v, fill_mode, cval):
    # The matrix of keras_preprocessing.image.affine_transformations.apply_affine_transform
    # (channels_last: row axis 0, col axis 1), written out here, then flips as apply_transform.
    m = np.eye(3)
    if theta != 0:
        t = np.deg2rad(theta)
        m = m @ np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx != 0 or ty != 0:
        m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    if shear != 0:
        s = np.deg2rad(shear)
        m = m @ np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        m = m @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    h, w = x.shape[0], x.shape[1]
    if not (theta == 0 and tx == 0 and ty == 0 and shear == 0 and zx == 1 and zy == 1):
        ox, oy = h / 2 - 0.5, w / 2 - 0.5
        m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
        chans = [ndimage.affine_transform(x[:, :, c], m[:2, :2], m[:2, 2], order=1, mode=fill_mode, cval=cval)
                 for c in range(x.shape[2])]
        x = np.stack(chans, axis=2)
    if flip_h:
        x = x[:, ::-1, :]
    if flip_v:
        x = x[::-1, :, :]
    return x


rng = np.random.default_rng(7)
h, w = 9, 8
img = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
cases = []
for mode in ['nearest', 'constant', 'reflect', 'wrap']:
    for k in range(5):
        p = dict(theta=float(rng.uniform(-60, 60)), tx=float(rng.uniform(-4, 4)), ty=float(rng.uniform(-4, 4)),
                 shear=float(rng.uniform(-30, 30)), zx=float(rng.uniform(0.6, 1.5)), zy=float(rng.uniform(0.6, 1.5)),
                 flipHorizontal=bool(k % 2), flipVertical=bool(k == 3))
        if k == 4:  # a pure shift that reaches far outside (several periods for wrap/reflect)
            p.update(theta=0.0, shear=0.0, zx=1.0, zy=1.0, tx=-13.25, ty=17.5)
        cval = 37.0
        out = keras_transform(img.astype(np.float32), p['theta'], p['tx'], p['ty'], p['shear'], p['zx'], p['zy'],
                              p['flipHorizontal'], p['flipVertical'], mode, cval)
        cases.append(dict(fillMode=mode, cval=cval, params=p, out=[round(float(v), 4) for v in out.ravel()]))
json.dump(dict(scipy=scipy.__version__, h=h, w=w, image=img.ravel().tolist(), cases=cases),
          open('test/fixtures/augment-scipy.json', 'w'), separators=(',', ':'))
print('wrote', len(cases), 'cases')
