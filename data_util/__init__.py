"""Preprocessing: a talking-head video -> a training folder (docs/DESIGN.md section 4).

One module per step; `data_util.runner` runs them in order. `process_data.sh` is a thin wrapper over it.
"""
