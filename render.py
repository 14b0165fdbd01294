#!/usr/bin/env python
"""Render a trained subject saying new speech:

    python render.py --config configs/<name>.txt --aud speech.wav [--out out.mp4] [--pose train|static|poses.json]

Loads logs/<expname>/ (config.txt + ckpt/latest.pt), converts the audio with the subject's aud_meta.json extractor
(or takes a .npy of features [N,16,D]), renders one frame per 1/25 s and writes an H.264 mp4 with the audio muxed.
Every training key (--img_size, --chunk, --device, ...) may be given too; it overrides the run's config.
"""
import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--aud", required=True, help="new speech: .wav (any audio/video file) or .npy features [N,16,D]")
    p.add_argument("--out", default="", help="output .mp4 (default: logs/<expname>/render/<audio name>.mp4)")
    p.add_argument("--pose", default="train", help="train (training poses ping-ponged) | static | poses.json")
    p.add_argument("--pose_index", type=int, default=0, help="--pose static: which training frame's pose")
    p.add_argument("--save_frames", default=None, help="also write the frames as PNGs into this folder")
    p.add_argument("--semantic_video", action="store_true", help="also write <out>_semantic.mp4 (class colours)")
    p.add_argument("--blink", default="natural", help="natural (15-20 blinks a minute, 100-300 ms each) | none "
                   "(eyes open) | a file of per-frame eye openness (.npy or one number per line; 1 = open as in "
                   "the training clip, ~0.3 = closed), one value per rendered frame")
    p.add_argument("--blink_seed", type=int, default=0, help="--blink natural: the seed of the blink times")
    p.add_argument("--loudness", default="match", choices=["match", "keep"], help="match: the speech's features "
                   "computed at the loudness of the subject's own audio, so that a quieter or louder recording opens "
                   "the mouth as far as in training (the video keeps the file's audio); keep: at its own level")
    p.add_argument("--full_frame", action="store_true", help="output in the original video's size: the render "
                   "pasted where preprocessing cropped it, over the full-frame background (bc_full.jpg)")
    return p.parse_known_args(argv)  # the rest: --config, --expname, --basedir, --device, any config key


def main(argv=None) -> int:
    args, rest = parse_args(argv)
    from pathlib import Path

    from nerf.render_video import render_video
    from nerf.runs import load_run

    try:
        if args.out and Path(args.out).suffix.lower() != ".mp4":
            raise ValueError(f"{args.out}: --out must end in .mp4")
        if not Path(args.aud).is_file():
            raise FileNotFoundError(f"{args.aud}: audio file not found")
        run = load_run(rest)
        out = Path(args.out) if args.out else run.run_dir / "render" / f"{Path(args.aud).stem}.mp4"
        res = render_video(run, args.aud, out, args.pose, args.pose_index, args.save_frames, args.semantic_video,
                           args.full_frame, args.blink, args.blink_seed, args.loudness)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # PreprocessError, ffmpeg failures
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing written", file=sys.stderr)
        return 130
    print(f"{res['frames']} frames {res['size'][0]}x{res['size'][1]} in {res['seconds']:.1f} s "
          f"({res['fps']:.2f} frames/s) -> {res['out']}")
    if res["semantic_out"]:
        print(f"semantic map video -> {res['semantic_out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
