"""SSP-NeRF model package: dataset, sampler, encodings, audio nets, field, deformation, rendering, trainer."""
