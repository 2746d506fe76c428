"""Reference recipes for the street contest, as plain functions, to compare the repo's models against.

:func:`datawhale_resnet18` is the Datawhale / Tianchi tutorial's baseline ("街景字符编码识别", Task 2-5): a
torchvision ResNet-18 body (its global average pool kept, its classifier dropped), one 11-way linear head per
character position (``heads``, 5 by default; 10 = no character), the sum of the heads' cross-entropies, Adam at a
constant 1e-3, batch 40, PIL decoding and torchvision transforms per image (train: Resize 64x128, RandomCrop 60x120,
ColorJitter(0.3, 0.3, 0.2), RandomRotation(10); val/test: Resize 60x120), trained on ``mchar_train`` only, the
epoch with the lowest ``mchar_val`` loss kept, predictions decoded by dropping every blank. Two deviations, both
forced by running offline: the body is randomly initialised (the tutorial loads ImageNet weights with
``pretrained=True``, a download), and the test images use the validation transform (the tutorial resizes them to
70x140 and predicts without cropping, a mismatch with its own training size).

It returns the test predictions and the seconds from the first decoded image to the last prediction.
``bench/street_models.py`` runs it beside the repo's models on the same data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class _SVHNDataset(Dataset):
    def __init__(self, paths, labels, transform, heads: int):
        self.paths, self.labels, self.transform, self.heads = list(paths), labels, transform, heads

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = self.transform(Image.open(self.paths[i]).convert("RGB"))
        label = list(self.labels[i]) if self.labels is not None else []
        label = (label + [10] * self.heads)[: self.heads]
        return image, torch.tensor(label, dtype=torch.long)


class _SVHNModel(nn.Module):
    def __init__(self, heads: int):
        super().__init__()
        from torchvision import models

        body = models.resnet18(weights=None)
        body.avgpool = nn.AdaptiveAvgPool2d(1)
        self.cnn = nn.Sequential(*list(body.children())[:-1])
        self.fcs = nn.ModuleList(nn.Linear(512, 11) for _ in range(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.cnn(x).flatten(1)
        return torch.stack([fc(feat) for fc in self.fcs], 1)  # N x heads x 11


def _read(data_dir: Path, folder: str, labels_json: str | None):
    names = sorted(p.name for p in (data_dir / folder).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    labels = None
    if labels_json is not None:
        entries = json.loads((data_dir / labels_json).read_text(encoding="utf-8"))
        labels = [entries[n]["label"] for n in names]
    return [data_dir / folder / n for n in names], names, labels


def _decode(logits: np.ndarray) -> list[str]:
    return ["".join(str(d) for d in row if d != 10) for row in logits.argmax(-1)]


def datawhale_resnet18(
    data_dir: str | Path,
    epochs: int = 10,
    batch_size: int = 40,
    lr: float = 1e-3,
    heads: int = 5,
    num_workers: int = 2,
    seed: int = 0,
    log=print,
) -> dict:
    """Train the tutorial's recipe on ``data_dir`` (the contest's layout) and predict ``mchar_test_a``.

    Returns ``{"predictions": {test name: string}, "seconds": float, "history": [per-epoch dicts],
    "best_epoch": int}``."""
    from torchvision import transforms as T

    data_dir = Path(data_dir)
    torch.manual_seed(seed)
    np.random.seed(seed)
    started = time.perf_counter()
    train_tf = T.Compose(
        [
            T.Resize((64, 128)),
            T.RandomCrop((60, 120)),
            T.ColorJitter(0.3, 0.3, 0.2),
            T.RandomRotation(10),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    eval_tf = T.Compose([T.Resize((60, 120)), T.ToTensor(), T.Normalize(MEAN, STD)])
    train_paths, _, train_labels = _read(data_dir, "mchar_train", "mchar_train.json")
    val_paths, _, val_labels = _read(data_dir, "mchar_val", "mchar_val.json")
    test_paths, test_names, _ = _read(data_dir, "mchar_test_a", None)

    def loader(paths, labels, tf, shuffle):
        return DataLoader(
            _SVHNDataset(paths, labels, tf, heads),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    train_loader = loader(train_paths, train_labels, train_tf, True)
    val_loader = loader(val_paths, val_labels, eval_tf, False)
    test_loader = loader(test_paths, None, eval_tf, False)
    model = _SVHNModel(heads)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr)

    def run(data, train: bool) -> tuple[float, np.ndarray]:
        model.train(train)
        losses, logits = [], []
        with torch.set_grad_enabled(train):
            for images, targets in data:
                out = model(images)
                loss = sum(criterion(out[:, k], targets[:, k]) for k in range(heads))
                if train:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                losses.append(float(loss.detach()))
                logits.append(out.detach().numpy())
        return float(np.mean(losses)), np.concatenate(logits)

    val_truth = ["".join(map(str, lab)) for lab in val_labels]
    history, best_loss, best_state, best_epoch = [], float("inf"), None, -1
    for epoch in range(epochs):
        t0 = time.perf_counter()
        train_loss, _ = run(train_loader, True)
        val_loss, val_logits = run(val_loader, False)
        val_acc = float(np.mean(np.array(_decode(val_logits)) == np.array(val_truth)))
        record = {
            "epoch": epoch,
            "train_loss": round(train_loss, 4),
            "val_loss": round(val_loss, 4),
            "val_acc": round(val_acc, 4),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        history.append(record)
        log(json.dumps(record))
        if val_loss < best_loss:  # the tutorial keeps the model with the lowest validation loss
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    _, test_logits = run(test_loader, False)
    predictions = dict(zip(test_names, _decode(test_logits), strict=True))
    return {
        "predictions": predictions,
        "seconds": time.perf_counter() - started,
        "history": history,
        "best_epoch": best_epoch,
    }
