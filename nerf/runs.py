"""A trained run, loaded for rendering or evaluation: logs/<expname>/config.txt + ckpt/latest.pt -> a Pipeline.

The run's resolved config is the base; command-line keys override it (e.g. --img_size, --chunk, --device); the
--config file only names the subject and the run. The speed keys (render_chunk, march_segment, max_points:
nerf/speed.py; cpu_kernels, cpu_mlp_precision) are the machine's: the run's saved values are dropped, so they are the user's or by device. A
checkpoint whose settings differ is refused in one line; one written before the estimator split loads
(nerf.pipeline.upgrade_state_dict).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nerf.checkpoint import check_fingerprint, load_checkpoint
from nerf.config import parse
from nerf.dataset import TalkingDataset
from nerf.distributed import pick_device
from nerf.pipeline import (BEFORE_KEY, ModelMeta, Pipeline, build_pipeline, fingerprint, saved_fingerprint,
                           upgrade_state_dict)


@dataclass
class LoadedRun:
    pipeline: Pipeline  # on `device`, in eval mode; pipeline.use_attention from the checkpoint
    cfg: object  # nerf.config.Config of the run (config.txt + command-line overrides)
    ds: TalkingDataset  # the requested split, frames not preloaded
    device: torch.device
    iteration: int
    class_names: list[str]  # empty when the model has no semantic head
    run_dir: Path

    @property
    def model(self) -> torch.nn.Module:
        return self.pipeline.model


def _strip_config(argv: list[str]) -> list[str]:
    """argv without `--config FILE` / `--config=FILE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--config":
            skip = True
        elif not a.startswith("--config="):
            out.append(a)
    return out


def _same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def load_run(argv: list[str], split: str = "train") -> LoadedRun:
    """The trained run named by the config flags in argv (--config, --expname, --basedir, --device, any key).

    The run's resolved config.txt is the base; flags given on the command line override it (e.g. --img_size,
    --chunk); the --config file only names the subject and run and must be for the same dataset."""
    user = parse(argv)
    run_dir = Path(user.train.basedir) / user.train.expname
    ckpt, run_cfg_path = run_dir / "ckpt" / "latest.pt", run_dir / "config.txt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint (train first: python train.py --config ... "
                                f"--expname {user.train.expname})")
    if not run_cfg_path.is_file():
        raise FileNotFoundError(f"{run_cfg_path}: the run's resolved config is missing")
    trained = parse(["--config", str(run_cfg_path)])
    if user.data.datadir and not _same_path(user.data.datadir, trained.data.datadir):
        where = user.config_file or "the command line"
        raise ValueError(f"{where}: datadir {user.data.datadir} is another subject than run {run_dir} "
                         f"(trained on {trained.data.datadir}); pass the matching --config or --expname")
    cfg = parse(["--config", str(run_cfg_path), *_strip_config(argv), "--datadir", trained.data.datadir,
                 "--preload", "false"])
    # speed settings belong to the machine that renders (nerf/speed.py): only the user's, never the run's
    ur = user.render
    cfg = cfg.replace("render", chunk=ur.chunk, march_segment=ur.march_segment, max_points=ur.max_points,
                      cpu_kernels=ur.cpu_kernels, cpu_mlp_precision=ur.cpu_mlp_precision)
    device = pick_device(cfg.train.device)
    ds = TalkingDataset(cfg.data, split)
    state = load_checkpoint(ckpt, map_location=device)
    missing = {k: v for k, v in BEFORE_KEY.items() if k not in state["fingerprint"]}  # an older checkpoint
    if missing:
        cfg = cfg.replace("model", **missing)
    weights = upgrade_state_dict(state["model"])
    meta = ModelMeta(ds.aud_dim, list(ds.class_names or []), weights["model.aabb"],
                     frame_ids=weights.get("model.frame_ids"))  # the per-frame code's frames (frame_code)
    try:  # the same shapes as in training, else a one-line error
        current = fingerprint(cfg, meta)
        check_fingerprint(ckpt, saved_fingerprint(state["fingerprint"], current), current)
    except ValueError as e:
        raise ValueError(str(e).replace("made with a different config", "made with a different config or subject"))
    pipeline = build_pipeline(cfg, meta)
    pipeline.load_state_dict(weights)
    pipeline.to(device).eval()
    it = int(state["iteration"])
    # whether the attention net was on is in the checkpoint; older ones: derived from the iteration as in training
    pipeline.use_attention = bool(state.get("audio_attention", it >= cfg.train.att_start))
    return LoadedRun(pipeline, cfg, ds, device, it, meta.class_names if pipeline.model.n_classes else [], run_dir)
