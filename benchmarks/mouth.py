#!/usr/bin/env python
"""The mouth on the sample: per-region quality, lip shape on new speech, and the ablations, over seeds.

    python benchmarks/mouth.py [--variants full,global,uniform,nosem,nodeform,nodirs,eyedirs,eyeuniform,...]
                               [--seeds 0,1] [--seconds 6] [--clip_seconds 12]

1. the sample clip of --clip_seconds (its lips spread, round and shut with what is said, with ground truth) ->
   dataset/<subject>/ (subject `mouth` for the 12 s clip the earlier results were made on, `mouth<N>` for N s),
2. per variant and seed, a run with the CPU preset (`<subject>_<variant>_s<seed>`; a run already finished by this
   script is reused: output/<subject>/<run>.done),
3. evaluate.py on every held-out frame (PSNR overall and per region, LMD, sync),
3b. for a model with the mouth-shape input, evaluate.py --mouth_shape measured as well (`*_told`: lips, inner
   mouth and LMD of the held-out frames drawn with their own measured shape: the drawing apart from the prediction),
4. (unless --no_render) render.py of new speech in another voice (voice 1) at the training poses at --render_size;
   the landmark back-end measures the mouth on the rendered frames (corner-to-corner width and inner-lip gap over the
   eye-corner distance, 3D) and correlates them with the ground-truth visemes of that speech
   (sample_data.speech.visemes) and with its loudness: over all frames (`r_*`) and over the frames rendered at the
   poses of talking frames (`r_*_talking`: not in an expression span of the clip nor in the HOLD_RAMP frames round
   it, where the head holds or nears the span's pose: a model whose colour sees the view direction replays the span's
   jaw drop at those poses whatever the audio; benchmarks/NOTES.md, 2026-12-03 fifth session). `full` pins every
   model key it depends on (`view_dirs = all`, as the runs on record); `eyedirs` is it with today's view directions,
   `eyeuniform` that with uniform sampling; `eyenosem`, `eyenodeform`, `eyeglobal` are the paper's ablations of
   `eyedirs` (README's table), `eyelong` is `eyedirs` trained twice as long, `eyenoatt` without the audio attention; `mouth` is `eyedirs` with the
   mouth-shape input (`mouth = true`, the default since 2026-12-04; the variants before pin it off) trained on the
   measured shape, `mouthho` on the held-out prediction (`mouth_teacher`), `mouthglobal` that without region
   attention; `defaults` is what train.py did without flags on 2026-12-05, `defuniform`, `defnosem`,
   `defnodeform` the paper's ablations of it; `ss2` is the cpu preset with `train_supersample = 2` pinned, `ss2uniform` its uniform
   ablation, `ss2face` it with half the rays drawn as AD-NeRF's face rays (`sampler_face_mix = 0.5`); `ss2shape`
   is `ss2` without the learned audio code (`audio_code = false`, the default since 2026-12-06: the field hears the
   audio through the predicted mouth shape alone; `full` pins `audio_code = true` for every variant before it),
   `ss2shapeuni`, `ss2shapenosem`, `ss2shapenodeform` the paper's ablations of it, `ss2shapemeas` it trained on the
   measured mouth shape (`mouth_teacher = measured`), `ss2shapemix` on the measured shape plus half the held-out
   prediction's error (`mouth_teacher = mix`); `ss2shapeenv` and `ss2shapemeasenv` are `ss2shape` and `ss2shapemeas`
   with the amplitude envelope in the shape's regression (`mouth_envelope = true`), `ss2shapemixenv` `ss2shapemix`
   with it; `ss2shapeenvuni`, `ss2shapeenvnosem`, `ss2shapeenvnodeform` the paper's ablations of `ss2shapeenv` (the default
   since 2026-12-06, third session), `ss2shapeenvlong` it trained for 12000 iterations; `ss2shapeenvcal` and `ss2shapemeasenvcal` are `ss2shapeenv` and
   `ss2shapemeasenv` with the regression's monotone calibration (`mouth_calibrate = true`), `ss2shapeenvcallong`,
   `ss2shapemeasenvcallong` those for 12000 iterations, `ss2shapeenvcallonguni` and `ss2shapemeasenvcallonguni` their uniform ablations,
   `ss2shapemeasenvcallongnosem` and `ss2shapemeasenvcallongnodeform` the paper's other two ablations of the latter,
   `ss2shapemeasenvcallongmbox` it with a fifth of the rays about the mouth (`sampler_mouth_share = 0.2`).
   `ss2shapemeasdecallong` (and `...uni`, `...nosem`, `...nodeform`: its ablations) is `ss2shapemeasenvcallong` with the
   envelope read without the MFCC pre-emphasis (`mouth_deemphasis = true`). `gate` (and `gateuni`, `gatenosem`,
   `gatenodeform`) is that with the torso deforming also above the jaw line where the semantic head says torso
   (`deform_gate = height+torso`: today's default since 2026-12-07); every other variant pins `height`. `gatebeta2`
   and `gatealpha25` are `gate` with the class shares leaning further to the small classes (`sampler_beta = 2`,
   `sampler_alpha = 0.25`); `gatet17` is `gate` with a 2^17 hash table (`hash_log2_table = 17`; the cpu preset: 15); `gate20k` is `gate` trained for
   20000 iterations (the cpu preset: 12000).
Writes benchmarks/results/<subject>.json (every run, and per variant the mean and the spread over seeds) and .png.
Each variant's train.py flags: benchmarks/mouth_variants.py.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks.mouth_variants import VARIANTS  # noqa: E402
from benchmarks.results_io import run_stage, sample_subject, save_figure, write_results  # noqa: E402

SPEECH = {"seed": 7, "voice": 1}
SHOWN_VARIANTS = 18  # the picture's bars: the newest variants
KEYS = ("psnr", "lips", "inner_mouth", "face", "eyes", "lmd", "sync", "lips_told", "inner_mouth_told", "lmd_told",
        "r_width", "r_opening", "r_loudness", "r_width_talking", "r_opening_talking", "r_loudness_talking")


def run(cmd: list[str], log: Path) -> float:
    return run_stage(cmd, log, ROOT, "mouth")


def mouth_shape(frames_dir: Path) -> dict[str, np.ndarray]:
    """Landmarks on the rendered PNGs -> per frame width and opening over the eye-corner distance (NaN: no face)."""
    import imageio.v3 as iio

    from data_util.landmarks import detect_landmarks, mouth_shape

    return mouth_shape(detect_landmarks([iio.imread(p) for p in sorted(frames_dir.glob("*.png"))]))


def subject(clip_seconds: float) -> str:
    """The sample subject's name for a clip length: `mouth` (12 s, the clip of the earlier results), `mouth<N>`."""
    return "mouth" if clip_seconds == 12 else f"mouth{clip_seconds:g}"


def talking_frames(n: int, name: str) -> np.ndarray:
    """bool [n]: the frames of render.py --pose train (the training poses ping-ponged) whose pose is that of a
    training frame outside the clip's expression spans and the HOLD_RAMP frames round them."""
    from nerf.poses import pingpong_indices
    from sample_data.motion import HOLD_RAMP

    spans = json.loads((ROOT / "dataset" / "vids" / f"{name}_gt.json").read_text())["expression_spans"]
    frames = json.loads((ROOT / "dataset" / name / "transforms_train.json").read_text())["frames"]
    ids = np.array([f["img_id"] for f in frames])[pingpong_indices(len(frames), n)]
    near_span = np.zeros(n, bool)
    for first, last in spans:
        near_span |= (ids >= first - HOLD_RAMP) & (ids <= last + HOLD_RAMP)
    return ~near_span


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-9 or b[ok].std() < 1e-9:
        return None
    return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3)


def speech_truth(seconds: float) -> dict[str, np.ndarray]:
    """The new speech's ground truth per video frame: lip width, opening, loudness."""
    from sample_data.speech import loudness_envelope, mouth_opening, synth_speech_syllables, visemes

    wav, sylls = synth_speech_syllables(seconds, seed=SPEECH["seed"], voice=SPEECH["voice"])
    n = int(np.ceil(seconds * 25))
    width, shut, _ = visemes(sylls, n)
    return {"width": width, "opening": mouth_opening(wav)[:n] * (1 - shut), "loudness": loudness_envelope(wav)[:n]}


def one_run(exp: str, extra: list[str], seed: int, args, config: Path, speech: Path, truth: dict, log: Path,
            name: str) -> dict:
    py, out_dir = sys.executable, ROOT / "output" / name
    done = out_dir / f"{exp}.done"
    if not done.is_file() or not (ROOT / "logs" / exp / "ckpt" / "latest.pt").is_file():  # a run moved away: again
        run([py, "train.py", "--config", str(config), "--expname", exp, "--seed", str(seed), *extra], log)
        done.write_text("trained\n")
    run([py, "evaluate.py", "--config", str(config), "--expname", exp, "--no_video"], log)
    told = told_mouth(exp, extra, config, log)
    shape = render_shape(exp, args, config, speech, log, out_dir) if args.render else {"width": [], "opening": []}
    n = len(shape["opening"])
    ev = json.loads((ROOT / "logs" / exp / "eval" / "metrics.json").read_text())
    rows = [json.loads(ln) for ln in (ROOT / "logs" / exp / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    region = ev.get("region_psnr") or {}
    num = lambda v: v if isinstance(v, (int, float)) else None  # noqa: E731 (skipped metrics are strings)
    return {"expname": exp, "seed": seed, "flags": extra, "iterations": rows[-1].get("iter"),
            "train_seconds": rows[-1].get("time_s"), "frames": ev.get("frames"), "psnr": ev.get("psnr"),
            "ssim": ev.get("ssim"), "miou": ev.get("miou"), "lmd": num(ev.get("lmd")), "sync": num(ev.get("sync")),
            "lips": region.get("lips"), "inner_mouth": region.get("inner_mouth"), "face": region.get("face"),
            "eyes": region.get("eyes"), **told,
            **correlations(truth, shape, np.ones(n, bool)),
            **{f"{k}_talking": v for k, v in correlations(truth, shape, talking_frames(n, name)).items()},
            "curves": {k: np.round(v, 4).tolist() for k, v in shape.items()}}


def told_mouth(exp: str, extra: list[str], config: Path, log: Path) -> dict[str, float]:
    """evaluate.py --mouth_shape measured (a model with the mouth input): lips, inner mouth and LMD of the held-out
    frames drawn with their own measured mouth shape, apart from the audio's prediction of it."""
    if "--mouth" not in extra or extra[extra.index("--mouth") + 1] != "true":
        return {}
    out = ROOT / "logs" / exp / "eval_measured"
    run([sys.executable, "evaluate.py", "--config", str(config), "--expname", exp, "--no_video", "--mouth_shape",
         "measured", "--out_dir", str(out)], log)
    ev = json.loads((out / "metrics.json").read_text())
    region = ev.get("region_psnr") or {}
    return {"lips_told": region.get("lips"), "inner_mouth_told": region.get("inner_mouth"),
            "lmd_told": ev.get("lmd") if isinstance(ev.get("lmd"), float) else None}


def render_shape(exp: str, args, config: Path, speech: Path, log: Path, out_dir: Path) -> dict[str, np.ndarray]:
    """render.py of the new speech at --render_size -> the rendered mouth's width and opening per frame."""
    frames = out_dir / f"frames_{exp}"
    shutil.rmtree(frames, ignore_errors=True)  # render.py does not clear it: frames of a longer render would stay
    run([sys.executable, "render.py", "--config", str(config), "--expname", exp, "--aud", str(speech), "--blink",
         "none", "--img_size", str(args.render_size), "--save_frames", str(frames),
         "--out", str(out_dir / f"{exp}.mp4")], log)
    return mouth_shape(frames)


def correlations(truth: dict, shape: dict, frames: np.ndarray) -> dict[str, float | None]:
    """r of the rendered width / opening with the truth's width / opening / loudness over the chosen frames [n]."""
    pick = lambda v: np.asarray(v, float)[:len(frames)][frames]  # noqa: E731
    return {"r_width": pearson(pick(truth["width"]), pick(shape["width"])),
            "r_opening": pearson(pick(truth["opening"]), pick(shape["opening"])),
            "r_loudness": pearson(pick(truth["loudness"]), pick(shape["opening"]))}


def summaries(runs: dict[str, dict]) -> dict[str, dict]:
    """{variant: summary} over the runs named mouth_<variant>_s<seed>."""
    by: dict[str, list[dict]] = {}
    for exp, r in runs.items():
        by.setdefault(exp.split("_")[1], []).append(r)
    return {v: summary(rs) for v, rs in by.items()}


def summary(runs: list[dict]) -> dict:
    """Per key: mean and spread (half the range) over the seeds."""
    out = {"seeds": [r["seed"] for r in runs]}
    for k in KEYS:
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            out[k] = {"mean": round(float(np.mean(vals)), 3), "spread": round((max(vals) - min(vals)) / 2, 3)}
    return out


def draw(path: Path, results: dict, truth: dict, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 12))
    grid = fig.add_gridspec(3, 1, height_ratios=[1.6, 1, 1], hspace=0.9)
    ax = fig.add_subplot(grid[0])
    names = list(results["variants"])[-SHOWN_VARIANTS:]  # the newest; all of them are in the .json
    shown = ("psnr", "lips", "inner_mouth")
    top = 32.0
    for j, key in enumerate(shown):
        mean = [results["variants"][n].get(key, {}).get("mean", np.nan) for n in names]
        top = max(top, np.nanmax(mean + [0.0]) + 1)
        spread = [results["variants"][n].get(key, {}).get("spread", 0) for n in names]
        ax.bar(np.arange(len(names)) + (j - 1) * 0.27, mean, 0.27, yerr=spread, capsize=3, label=key)
    seeds = [len(results["variants"][n].get("seeds", [])) for n in names]
    ax.set_xticks(np.arange(len(names)), [f"{n} ({k})" for n, k in zip(names, seeds)], rotation=30, ha="right",
                  fontsize=8)
    ax.set_xlabel(f"variant (seeds); the {len(names)} newest", fontsize=8)
    ax.set_ylabel("held-out PSNR, dB (mean, bar: spread over seeds)")
    ax.set_ylim(10, top)
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3, axis="y")
    wanted = [f"{name}_{v}_s0" for v in ("full", "eyedirs", "defaults", "ss2", "ss2shape", "ss2shapeenv",
                                         "ss2shapemeasenvcallong", "ss2shapemeasdecallong")]
    # the last two of these with a render: the default before and after
    shown_runs = ([r for r in results["runs"] if r["expname"] in wanted and r.get("curves", {}).get("width")][-2:]
                  or results["runs"][:1])
    t = np.arange(len(truth["width"])) / 25
    near_span = ~talking_frames(len(t), name)
    for k, key in enumerate(("width", "opening")):
        a = fig.add_subplot(grid[1 + k])
        a.fill_between(t, 0, 1, where=near_span, color="0.85", transform=a.get_xaxis_transform(),
                       label="posed at or near an expression span")
        a.plot(t, truth[key], "k-", lw=1.5, label=f"ground truth {key} (visemes of the new speech)")
        a2 = a.twinx()
        for run_, colour in zip(shown_runs, ("tab:red", "tab:blue")):
            meas = np.array(run_["curves"][key])
            a2.plot(t[:len(meas)], meas, ".-", color=colour, ms=3,
                    label=f"{run_['expname']}: r = {run_['r_' + key]} (talking poses {run_.get('r_' + key + '_talking')})")
        a.set_title(f"rendered mouth {key} vs the new speech's visemes (measured on the render, right axis)",
                    fontsize=9)
        a.legend(fontsize=7, loc="upper left")
        a2.legend(fontsize=7, loc="upper right")
    a.set_xlabel("seconds of new speech (another voice)")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="full,global", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--seconds", type=float, default=6.0, help="length of the new speech rendered")
    p.add_argument("--render_size", type=int, default=256, help="rendered size for the landmark measurement")
    p.add_argument("--no_render", dest="render", action="store_false",
                   help="skip step 4 (no lip-shape r values; a 256 px render of 6 s takes 3-9 min on 2 cores)")
    p.add_argument("--clip_seconds", type=float, default=12.0, help="length of the sample clip trained on")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<subject>.json")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}: choose from {list(VARIANTS)}")
    name = subject(args.clip_seconds)
    args.out = args.out or RESULTS / f"{name}.json"
    _, log, speech = sample_subject(name, ROOT, args.seconds, **SPEECH, clip_seconds=args.clip_seconds)
    config = ROOT / "configs" / f"{name}.txt"
    truth = speech_truth(args.seconds)
    results: dict = {"command": "python benchmarks/mouth.py " + " ".join(argv or sys.argv[1:]), "runs": [],
                     "variants": {}, "flags": VARIANTS}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    kept = {r["expname"]: r for r in previous.get("runs", [])}  # runs of other variants from an earlier call
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:  # seed-major: a partial result already compares the variants
        for variant in variants:
            exp = f"{name}_{variant}_s{seed}"
            kept[exp] = one_run(exp, VARIANTS[variant], seed, args, config, speech, truth, log, name)
            results["runs"] = list(kept.values())
            results["variants"] = summaries(kept)
            write_results(args.out, results, lambda png: draw(png, results, truth, name))
    results["runs"] = list(kept.values())
    return write_results(args.out, results, lambda png: draw(png, results, truth, name))


if __name__ == "__main__":
    sys.exit(main())
