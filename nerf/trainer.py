"""The training loop: sampling, optimisation, validation, logging and checkpoints. No model maths here.

One iteration (docs/DESIGN.md section 8 draws it): the sampler draws rays (frame, pixel, class) -> the dataset gives rays,
colours and each distinct frame's audio windows -> `Pipeline.forward` (codes once per frame, then
`Pipeline.render_rays`: estimator -> field -> rendering functions) -> `losses.training_loss` -> Adam step -> per-ray
losses go back to the sampler -> `Pipeline.update_estimator` (the occupancy grid, every occ_every steps).
Under torchrun each rank draws its own rays (its own seed, n_rand / world_size of them) and DDP averages the
gradients, so every rank holds the same parameters; after each occupancy-grid update rank 0's grid is broadcast,
so every rank renders with the same one. Only rank 0 validates, logs and writes checkpoints.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from common.constants import class_palette
from nerf import losses, metrics
from nerf.checkpoint import check_fingerprint, load_checkpoint, save_checkpoint, set_rng_states
from nerf.presets import CHOICES as PRESET_CHOICES
from nerf.dataset import TalkingDataset
from nerf.ema import WeightAverage, params_of, restore_average
from nerf.distributed import DistInfo, all_gather_cat, all_mean, broadcast_buffers, pick_device
from nerf.model import pose6
from nerf.mouth_refine import LR_MULT as REFINE_LR_MULT, frame_rows, training_shapes
from nerf.pipeline import ModelMeta, build_for_data, fingerprint, saved_fingerprint
from nerf.run_plots import plot_run
from nerf.sampler import make_sampler


DEFAULT_LR = {"mlp": 5e-4, "hash": 1e-2}  # Adam learning rate per backbone when TrainConfig.lr is 0


@dataclass
class TrainConfig:
    """The `train` section: the run, the optimiser, validation, logging and checkpoints."""
    expname: str = ""  # run name: logs/<expname>/ (default: the config file's name)
    basedir: str = "logs"  # where run folders go
    iters: int = 20000  # total training iterations
    resume: bool = False  # continue from logs/<expname>/ckpt/latest.pt
    device: str = dc_field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})  # auto (cuda if available) | cpu | cuda
    preset: str = dc_field(default="auto", metadata={"choices": PRESET_CHOICES})  # settings sized for the device (nerf/presets.py): auto = by device; keys you set win
    seed: int = 0  # random seed (rank r of torchrun uses seed + r)
    n_rand: int = 2048  # rays per iteration (over all ranks)
    lr: float = 0.0  # Adam learning rate; 0: per backbone (mlp 5e-4 as AD-NeRF, hash 1e-2)
    lr_decay: float = 0.1  # the learning rate falls by this factor every lr_decay_iters (exponentially)
    lr_decay_iters: int = 250000  # iterations over which lr falls by lr_decay (0: iters)
    lr_warmup: int = 100  # the learning rate rises linearly from 0 over this many first iterations (without it
    # a hash field can blow its density up in the first ~15 steps and get stuck with a wall at the near plane)
    att_lr_mult: float = 5.0  # the audio attention net learns at lr * this (AD-NeRF: 5)
    att_start: int = 3000  # iteration at which the audio attention (smoothing) net starts
    mouth_teacher: str = dc_field(default="auto", metadata={"choices": ("auto", "held_out", "measured", "mix")})  # the mouth shape the field sees on a training frame (model key mouth): held_out = the audio's prediction from a fit that did not see the frame's block (so the field learns how far to trust it, as when rendering) | measured = its landmarks' shape | mix = measured + mouth_teacher_mix * (held_out - measured) | auto = per output (opening, width) measured where the prediction's held-out r >= 0.8, else held_out
    mouth_teacher_mix: float = 0.5  # mouth_teacher = mix: the share of the held-out prediction's error the field sees (0 = measured, 1 = held_out)
    mouth_refine: float = 0.0  # > 0: each training frame's mouth-shape input, where it is the measured shape, gets an offset learned with the field from its lip and inner-mouth rays, at most this many standard deviations of that output over the training frames, to undo the landmarks' measurement noise; at the end the audio's regression is refitted on the corrected shapes (nerf/mouth_refine.py). 0 (default): the taught shapes as they are (0.5 on the 24 s sample, 2 seeds: lips +0.2 dB, inner mouth -0.6, LMD equal; benchmarks/NOTES.md)
    lambda_sem: float = 0.05  # weight of the semantic cross-entropy (0.2: -0.6 dB on the sample, NOTES.md)
    lambda_deform: float = 0.01  # weight of the torso deformation's mean ||dx||^2
    val_every: int = 500  # validate (and log metrics.jsonl) every this many iterations and at the end
    val_frames: int = 2  # validation frames rendered (evenly spread over the val split)
    ckpt_every: int = 500  # write ckpt/latest.pt every this many iterations and at the end
    log_every: int = 25  # TensorBoard scalars every this many iterations
    amp: bool = False  # mixed precision (CUDA only; ignored on the CPU)
    threads: int = 0  # torch CPU threads (0: torch's default)
    time_budget: float = 0.0  # stop after this many seconds of training (0: no limit), then validate and save
    ema_decay: float = 0.999  # validation and the saved model use this moving average of the weights (nerf/ema.py; 0: the last iterate)


def learning_rate(it: int, base: float, decay: float, decay_iters: int, warmup: int) -> float:
    """base * decay^(it / decay_iters), ramped up linearly from 0 over the first `warmup` iterations."""
    warm = min(1.0, it / warmup) if warmup > 0 else 1.0
    return warm * base * decay ** (it / max(decay_iters, 1))


def without_parsing(cfg):
    """The config for a dataset without parsing/ (AD-NeRF's folders): a copy with the semantic head and semantic
    sampling off, so that the run's saved config.txt and the checkpoint's fingerprint say what was trained."""
    return cfg.replace("model", semantic=False).replace("sampler", sampling="uniform")


class Trainer:
    def __init__(self, cfg, dist: DistInfo | None = None):
        """cfg: the parsed nerf.config.Config (sections data, model, render, sampler, train)."""
        self.dist = dist or DistInfo()
        self.train_ds = TalkingDataset(cfg.data.for_training(), "train")
        if not self.train_ds.class_names:  # an AD-NeRF folder: no parsing, so no semantic head or sampling
            cfg = without_parsing(cfg)
            if self.dist.is_main:
                print(f"{self.train_ds.root}: no parsing/ -> semantic head and semantic sampling off")
        if cfg.model.eyes and self.train_ds.eye is None:  # nothing to learn blinks from
            cfg = cfg.replace("model", eyes=False)
            if self.dist.is_main:
                print(f"{self.train_ds.root}: {self.train_ds.eye_source} -> training without the eye input")
        elif cfg.model.eyes and self.dist.is_main and "estimated" in self.train_ds.eye_source:
            print(f"{self.train_ds.root}: eye openness {self.train_ds.eye_source} (the blink input)")
        if cfg.model.eyes and cfg.model.eye_region and self.train_ds.eye_region is None:
            cfg = cfg.replace("model", eye_region=False)
            if self.dist.is_main:
                print(f"{self.train_ds.root}: no face shape in track_params.pt -> the eye input acts everywhere "
                      "(eye_region off)")
        if cfg.model.mouth and (self.train_ds.mouth is None or cfg.data.zero_audio):  # no landmarks, or the
            cfg = cfg.replace("model", mouth=False)  # zero-audio control (the shape would tell the mouth anyway)
            if self.dist.is_main:
                why = "zero_audio" if cfg.data.zero_audio else self.train_ds.mouth_source
                print(f"{self.train_ds.root}: {why} -> training without the mouth input")
        if not cfg.model.mouth and not cfg.model.audio_code:  # the field must hear the audio one way
            cfg = cfg.replace("model", audio_code=True)
            if self.dist.is_main:
                print("no mouth input -> the field hears the audio through a learned audio code (audio_code = true)")
        self.cfg, self.tc = cfg, cfg.train
        if self.tc.threads > 0:
            torch.set_num_threads(self.tc.threads)
        self.device = pick_device(self.tc.device, self.dist.local_rank)
        self.amp = self.tc.amp and self.device.type == "cuda"
        torch.manual_seed(self.tc.seed + self.dist.rank)
        self.run_dir = Path(self.tc.basedir) / self.tc.expname
        self.ckpt_path = self.run_dir / "ckpt" / "latest.pt"
        if cfg.preset_note and self.dist.is_main:
            print(f"{cfg.preset_note} (device {self.device.type})")

        self.val_ds = TalkingDataset(cfg.data, "val") if self.dist.is_main else None
        ds = self.train_ds
        if self.val_ds is not None and (ds.h, ds.w) != (self.val_ds.h, self.val_ds.w):
            print(f"training rays through {ds.w}x{ds.h} images; validation at {self.val_ds.w}x{self.val_ds.h}")
        self.class_names = ds.class_names or []
        self.sampler = make_sampler(ds, cfg.sampler, seed=self.tc.seed + 1000 * self.dist.rank)
        meta = ModelMeta.from_dataset(ds)
        self.pipeline, cfg, code_note = build_for_data(cfg, meta, self.tc.seed + self.dist.rank)
        self.pipeline, self.cfg = self.pipeline.to(self.device), cfg  # (a per-frame code may be on: the data's choice)
        if code_note and self.dist.is_main:
            print(code_note)
        self.train_mouth, self.refine, note = training_shapes(  # [F,2] or None; MouthRefinement or None
            self.pipeline.model.mouth, ds.mouth, self.tc.mouth_teacher, self.tc.mouth_teacher_mix, self.tc.mouth_refine)
        if note and self.dist.is_main:
            print(note)
        if self.refine is not None:
            self.refine.to(self.device)
        self.model = self.pipeline.model
        self.fingerprint = fingerprint(cfg, meta)
        self.forward = self.pipeline
        if self.dist.world > 1:
            self.forward = nn.parallel.DistributedDataParallel(
                self.pipeline, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True, broadcast_buffers=False)  # buffers: broadcast after estimator updates
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=self.lr_at(0), betas=(0.9, 0.999))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = WeightAverage(self.pipeline, self.tc.ema_decay) if self.tc.ema_decay != 0 else None
        self.poses = pose6(ds.c2w)  # [F,6]
        self.start_iter, self.time_s = 0, 0.0
        self.writer = None

    def _param_groups(self) -> list[dict]:
        """The audio attention net at att_lr_mult x lr (AD-NeRF); everything else at lr."""
        att, rest = [], []
        for name, p in self.model.named_parameters():
            (att if "att" in name.split(".")[0].lower() else rest).append(p)
        groups = [{"params": rest, "lr_mult": 1.0}]
        if att:
            groups.append({"params": att, "lr_mult": self.tc.att_lr_mult})
        if self.refine is not None:
            groups.append({"params": [self.refine.raw], "lr_mult": REFINE_LR_MULT})
        return groups

    def lr_at(self, it: int) -> float:
        base = self.tc.lr if self.tc.lr > 0 else DEFAULT_LR.get(self.cfg.model.backbone, 5e-4)
        return learning_rate(it, base, self.tc.lr_decay, self.tc.lr_decay_iters or self.tc.iters,
                             self.tc.lr_warmup)

    # ---- one iteration ---------------------------------------------------------------------------------
    def step(self, it: int) -> dict[str, float]:
        ds, dev, tc = self.train_ds, self.device, self.tc
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(it) * g["lr_mult"]
        frame, y, x, cls = self.sampler.sample(max(tc.n_rand // self.dist.world, 1))
        n = len(frame)  # (rays on a hand or a filled edge are dropped: UNTRAINED_CLASSES)
        rays_o, rays_d = ds.rays(frame, y, x)
        gt = ds.pixels(frame, y, x).to(dev)
        if self.refine is None:
            uniq, inv = frame.unique(return_inverse=True)
        else:  # one row per frame and kind of ray: only mouth rays move the offsets
            uniq, learns, inv = frame_rows(frame, cls, self.class_names)
        aud = ds.audio_windows(uniq, self.pipeline.smooth).to(dev)  # [U,W,16,D]
        eye = None if ds.eye is None else ds.eye[uniq].to(dev)  # [U]
        if self.refine is not None:
            mouth = self.refine(uniq.to(dev), learns.to(dev))  # [U,2]
        else:
            mouth = None if self.train_mouth is None else self.train_mouth[uniq].to(dev)  # [U,2]
        near = torch.full((n,), ds.near, device=dev)
        far = torch.full((n,), ds.far, device=dev)
        self.pipeline.use_attention = it >= tc.att_start
        with torch.autocast(dev.type, enabled=self.amp):
            out = self.forward(aud, inv.to(dev), rays_o.to(dev), rays_d.to(dev), near, far,
                               self.poses[frame].to(dev), ds.bg[y, x].to(dev), eye, mouth,
                               ds.frame_numbers[uniq].to(dev) if self.model.frame_dim else None)
        loss, per_ray, logs = losses.training_loss(out, gt, cls.to(dev) if self.class_names else None,
                                                   tc.lambda_sem, tc.lambda_deform)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.refine is not None and self.dist.world > 1:  # DDP averages the field's gradients, not these
            torch.distributed.all_reduce(self.refine.raw.grad)
            self.refine.raw.grad.div_(self.dist.world)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.pipeline)
        self.sampler.update(*all_gather_cat([cls.to(dev), per_ray], self.dist))  # same shares on all ranks
        if self.pipeline.update_estimator(it):  # each rank updated from its own random cells: keep rank 0's
            broadcast_buffers(self.pipeline.estimator, self.dist)
        logs["psnr_train"] = metrics.batch_psnr(out["rgb"], gt)
        return logs

    # ---- validation ------------------------------------------------------------------------------------
    def validate(self, it: int) -> dict:
        ds = self.val_ds
        idx = np.unique(np.linspace(0, len(ds) - 1, max(self.tc.val_frames, 1)).round().astype(int))
        preds, gts, pars, labels, sel = [], [], [], [], torch.from_numpy(idx)
        codes = self.pipeline.frame_codes(ds.aud, ds.aud_ids[sel], eye=None if ds.eye is None else ds.eye[sel],
                                          frames=ds.frame_numbers[sel])  # [V,cond_dim]
        for k, f in enumerate(idx.tolist()):
            r = self.pipeline.render_frame(ds, ds.c2w[f], codes[k])
            preds.append(r["rgb"])
            gts.append(ds.image(f).float() / 255.0)
            if ds.class_names is not None:
                pars.append(ds.parsing_map(f).long())
            if "labels" in r:
                labels.append(r["labels"])
        pred, gt = torch.cat(preds), torch.cat(gts)  # [V*H,W,3]: frames stacked vertically
        res = {"psnr": float(metrics.psnr(pred, gt)), "miou": None, "region_psnr": {}}
        if pars:
            par = torch.cat(pars)
            res["region_psnr"] = {k: float(v) for k, v in
                                  metrics.region_psnr(pred, gt, par, self.class_names).items()}
            if labels:
                res["miou"] = float(metrics.class_miou(torch.cat(labels), par, self.class_names))
        self._log_images(it, pred, gt, torch.cat(labels) if labels else None)
        return res

    # ---- logging and checkpoints -----------------------------------------------------------------------
    def _log_images(self, it: int, pred: Tensor, gt: Tensor, labels: Tensor | None) -> None:
        if self.writer is None:
            return
        row = [gt, pred]
        if labels is not None:
            palette = torch.from_numpy(class_palette(len(self.class_names)).astype(np.float32) / 255.0)
            row.append(palette[labels])
        self.writer.add_image("val/gt_pred_sem", torch.cat(row, 1), it, dataformats="HWC")

    def _write_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def averaged(self):
        """A block in which the pipeline holds the moving average of its weights (ema_decay; else as it is)."""
        return self.ema.applied(self.pipeline) if self.ema is not None else contextlib.nullcontext()

    def save(self, it: int) -> None:
        """The checkpoint's model is the averaged one (what rendering loads); the live weights and the average's
        update count ride along for --resume."""
        extra = {} if self.ema is None else {"live_params": params_of(self.pipeline),
                                             "ema_updates": self.ema.updates}
        if self.refine is not None:
            extra["mouth_refine"] = self.refine.raw.detach()
        with self.averaged():
            save_checkpoint(self.ckpt_path, model=self.pipeline, optimizer=self.optimizer, sampler=self.sampler,
                            iteration=it, fingerprint=self.fingerprint, time_s=self.time_s,
                            audio_attention=self.pipeline.use_attention, extra=extra)

    def resume(self) -> None:
        state = load_checkpoint(self.ckpt_path, map_location=self.device)
        # a checkpoint from before a key existed was made with BEFORE_KEY's value (resume with that flag)
        check_fingerprint(self.ckpt_path, saved_fingerprint(state["fingerprint"], self.fingerprint), self.fingerprint)
        self.pipeline.load_state_dict(state["model"])  # Pipeline.load_state_dict upgrades pre-split checkpoints
        self.ema = restore_average(self.pipeline, state, self.tc.ema_decay, self.ckpt_path)
        if (self.refine is None) != ("mouth_refine" not in state):
            raise ValueError(f"{self.ckpt_path}: trained without mouth-shape corrections; resume with --mouth_refine 0"
                             if self.refine is not None else f"{self.ckpt_path}: trained with mouth-shape corrections; "
                             "resume with the mouth_refine of its config.txt")
        if self.refine is not None:
            self.refine.raw.data.copy_(state["mouth_refine"])
        self.optimizer.load_state_dict(state["optimizer"])
        sampler_state = state["sampler"]
        if self.dist.rank > 0:  # other ranks keep their own random stream, moved on by the iteration
            sampler_state = {**sampler_state, "rng": np.random.default_rng(
                [self.tc.seed, self.dist.rank, state["iteration"]]).bit_generator.state}
        self.sampler.load_state_dict(sampler_state)
        if self.dist.rank == 0:
            set_rng_states(state["rng"])
        self.start_iter, self.time_s = int(state["iteration"]), float(state["time_s"])

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.run_dir / "config.txt")
        path = self.run_dir / "metrics.jsonl"
        if self.tc.resume and path.exists():  # drop records from after the checkpoint
            keep = [ln for ln in path.read_text().splitlines() if ln.strip()
                    and json.loads(ln)["iter"] <= self.start_iter]
            path.write_text("".join(k + "\n" for k in keep))
        else:
            path.write_text("")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir / "tb"))

    # ---- the loop --------------------------------------------------------------------------------------
    def train(self) -> dict | None:
        """Train to `iters` (or the time budget); returns the last validation record (rank 0)."""
        from tqdm import tqdm

        tc = self.tc
        if tc.resume:
            self.resume()
        if self.dist.is_main:
            self._prepare_run_dir()
        self.pipeline.use_attention = self.start_iter >= tc.att_start
        last = None
        bar = tqdm(range(self.start_iter + 1, tc.iters + 1), initial=self.start_iter, total=tc.iters,
                   disable=not self.dist.is_main, desc=tc.expname, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)  # a log file gets a line per 30 s
        logs: dict[str, float] = {}
        for it in bar:
            t0 = time.perf_counter()
            logs = self.step(it)
            self.time_s += time.perf_counter() - t0
            out_of_time = tc.time_budget > 0 and all_mean(self.time_s, self.dist) >= tc.time_budget
            final = it == tc.iters or out_of_time
            if final and self.refine is not None:
                self._refit_mouth()
            if self.dist.is_main:
                bar.set_postfix(loss=f"{logs['loss']:.4f}", psnr=f"{logs['psnr_train']:.1f}", refresh=False)
                if it % tc.log_every == 0 or final:
                    for k, v in logs.items():
                        self.writer.add_scalar(f"train/{k}", v, it)
                    self.writer.add_scalar("train/lr", self.lr_at(it), it)
                    for k, v in self.sampler.shares().items():
                        self.writer.add_scalar(f"shares/{k}", v, it)
                if it % tc.val_every == 0 or final:
                    last = self._validate_and_log(it, logs)
                if it % tc.ckpt_every == 0 or final:
                    self.save(it)
            if out_of_time:
                break
        if self.start_iter >= tc.iters and self.dist.is_main:  # nothing left to train
            print(f"{self.ckpt_path}: already at iteration {self.start_iter} >= iters {tc.iters}")
        if self.writer is not None:
            self.writer.close()
            plot_run(self.run_dir)
            self._save_refined()
        return last

    def _refit_mouth(self) -> None:
        """The audio's regression fitted again on the corrected shapes (what the field learnt a shape means)."""
        ds = self.train_ds
        self.pipeline.model.mouth.refit(ds.aud[ds.aud_ids], ds.mouth + self.refine.offsets().detach().cpu())
        if self.dist.is_main:
            tqdm_write(f"{self.refine.describe()}; refitted: {self.pipeline.model.mouth.describe()}")

    def _save_refined(self) -> None:
        """logs/<expname>/mouth_refined.npz: the training frames' img_ids, taught and corrected mouth shapes."""
        if self.refine is not None:
            np.savez(self.run_dir / "mouth_refined.npz", img_ids=self.train_ds.img_ids,
                     taught=self.refine.teacher.cpu().numpy(), corrected=self.refine.shapes().cpu().numpy())

    def _validate_and_log(self, it: int, logs: dict) -> dict:
        with self.averaged():
            res = self.validate(it)
        record = {"iter": it, "time_s": round(self.time_s, 3), **res,
                  **{k: round(v, 6) for k, v in logs.items()}, "lr": self.lr_at(it),
                  "shares": {k: round(v, 5) for k, v in self.sampler.shares().items()}}
        self._write_metrics(record)
        self.writer.add_scalar("val/psnr", res["psnr"], it)
        if res["miou"] is not None:
            self.writer.add_scalar("val/miou", res["miou"], it)
        for k, v in res["region_psnr"].items():
            self.writer.add_scalar(f"val_region/{k}", v, it)
        miou = "" if res["miou"] is None else f", mIoU {res['miou']:.3f}"
        tqdm_write(f"iter {it}: val psnr {res['psnr']:.2f} dB{miou}, time {self.time_s:.0f} s")
        return record


def tqdm_write(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg)


def run(cfg) -> dict | None:
    """Build and train (what train.py calls); sets up torch.distributed under torchrun."""
    from nerf.distributed import setup, teardown

    dist = setup(cfg.train.device)
    try:
        return Trainer(cfg, dist).train()
    finally:
        teardown(dist)
