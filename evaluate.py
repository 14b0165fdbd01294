#!/usr/bin/env python
"""Metrics of a trained run on its held-out frames:

    python evaluate.py --config configs/<name>.txt [--expname RUN] [--max_frames N] [--aud new_speech.wav]

Renders the validation frames with their own audio and pose; writes logs/<expname>/eval/metrics.json (PSNR, SSIM,
LPIPS when its weight files are given or already on disk (--lpips_backbone, --lpips_heads; never downloaded), PSNR per region, mIoU, mouth LMD, sync), side_by_side.mp4 and plots. With --aud it also renders
that speech and reports the Pearson r between the rendered mouth opening and the audio's loudness.
"""
import argparse
import json
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--max_frames", type=int, default=0, help="evaluate at most this many val frames (0: all)")
    p.add_argument("--aud", default=None, help="also check mouth opening vs loudness on this new speech file")
    p.add_argument("--aud_pose", default="static", help="pose for --aud: static | train | poses.json")
    p.add_argument("--no_video", action="store_true", help="skip side_by_side.mp4")
    p.add_argument("--out_dir", default="", help="default: logs/<expname>/eval")
    p.add_argument("--mouth_shape", default="predicted", choices=("predicted", "measured"),
                   help="the mouth-shape input of the held-out frames: predicted from their audio (default, what new "
                   "speech gets) or measured on their own landmarks (a diagnostic: the drawing of a known mouth)")
    p.add_argument("--lpips_backbone", default=None, help="torchvision's alexnet-owt-7be5be79.pth (default: torch's "
                   "hub cache when it holds it; never downloaded)")
    p.add_argument("--lpips_heads", default=None, help="the lpips package's weights/v0.1/alex.pth (default: the "
                   "installed lpips package's copy)")
    return p.parse_known_args(argv)  # the rest: --config, --expname, --basedir, --device, any config key


def main(argv=None) -> int:
    args, rest = parse_args(argv)
    from pathlib import Path

    from common.fileio import save_json
    from nerf.evaluation import evaluate_run, mouth_vs_loudness
    from nerf.lpips import load_lpips
    from nerf.runs import load_run

    try:
        lpips = load_lpips(args.lpips_backbone, args.lpips_heads)  # before rendering: a wrong file fails first
        print(lpips[1])
        run = load_run(rest, split="val")
        out_dir = Path(args.out_dir) if args.out_dir else run.run_dir / "eval"
        res = evaluate_run(run, out_dir, args.max_frames, video=not args.no_video, lpips=lpips,
                           mouth_shape=args.mouth_shape)
        if args.aud:
            res["new_audio"] = mouth_vs_loudness(run, args.aud, out_dir, args.aud_pose)
            from nerf.evaluation import _clean

            save_json(out_dir / "metrics.json", _clean(res))
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # PreprocessError, ffmpeg failures
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {k: res[k] for k in ("frames", "psnr", "ssim", "lpips", "miou", "lmd", "sync")}
    if "new_audio" in res:
        summary["mouth_loudness_r"] = res["new_audio"]["r"]
    print(json.dumps(summary))
    print(f"-> {out_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
