#!/usr/bin/env python
"""Train SSP-NeRF on a processed clip: python train.py --config configs/<name>.txt [--key value ...]

Writes logs/<expname>/: config.txt (resolved), ckpt/latest.pt, metrics.jsonl, tb/ (TensorBoard).
Several processes: torchrun --nproc_per_node N train.py --config ...
"""
import sys


def main(argv=None) -> int:
    from nerf.config import parse
    from nerf.trainer import run

    cfg = parse(argv)
    if not cfg.data.datadir:
        print("error: no --datadir (give it on the command line or in --config)", file=sys.stderr)
        return 2
    try:
        run(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with --resume true", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    from nerf.distributed import exit_process

    exit_process(main())
