"""The variants of benchmarks/mouth.py: each a set of train.py flags (what each is: mouth.py's docstring).

Every variant pins every model key it depends on (FULL), so that a later change of a default does not change what a
variant is; the results on record in benchmarks/results/mouth*.json were made with these flags.
"""
from __future__ import annotations

FULL = {"region_attention": "true", "eye_region": "true", "audio_at_eyes": "true", "sampling": "semantic",
        "semantic": "true", "deform": "true", "view_dirs": "all", "mouth": "false",
        "audio_code": "true", "mouth_envelope": "false", "mouth_calibrate": "false",
        "mouth_deemphasis": "false", "mouth_refine": "0", "deform_gate": "height"}  # explicit, so that a later change of
# a default does not change what a variant is (audio_at_eyes: the full and global runs on record predate its default false of 2026-12-03)
MOUTHHO = {"view_dirs": "eyes", "mouth": "true", "mouth_teacher": "held_out"}  # eyedirs with the mouth input
DEFAULTS = {**MOUTHHO, "region_attention": "false", "audio_at_eyes": "false"}  # train.py's defaults of 2026-12-05
# the default of 2026-12-06 (fourth session): shape alone, envelope, calibration, measured teacher, 12000 iterations
LONG = {"train_supersample": "2", "audio_code": "false", "mouth_envelope": "true", "mouth_calibrate": "true",
        "iters": "12000", "mouth_teacher": "measured"}
ABLATIONS = {
    "full": {},
    "global": {"region_attention": "false"},  # the old audio conditioning: every point sees the same code
    "uniform": {"sampling": "uniform"},
    "nosem": {"semantic": "false", "sampling": "uniform"},  # no parsing head: nothing to sample by
    "nodeform": {"deform": "false"},
    "nodirs": {"view_dirs": "none"},  # colour without the view direction: nothing tied to a head pose
    "eyedirs": {"view_dirs": "eyes"},  # the view direction seen round the eyes only (gaze), not at the mouth
    "eyeuniform": {"view_dirs": "eyes", "sampling": "uniform"},  # eyedirs' ablation of the semantic sampling
    # the paper's ablations with eyedirs as the full model (the 24 s protocol; README's table)
    "eyenosem": {"view_dirs": "eyes", "semantic": "false", "sampling": "uniform"},
    "eyenodeform": {"view_dirs": "eyes", "deform": "false"},
    "eyeglobal": {"view_dirs": "eyes", "region_attention": "false"},
    # twice the iterations: the 20 minutes of #16's protocol on a CPU that runs 4500 in 10
    "eyelong": {"view_dirs": "eyes", "iters": "9000", "att_start": "6000"},
    "eyenoatt": {"view_dirs": "eyes", "att_start": "1000000"},  # no audio attention: each frame's own code, unsmoothed
    # the mouth-shape input (nerf/mouth_shape.py, default since 2026-12-04): eyedirs with it
    "mouth": {"view_dirs": "eyes", "mouth": "true", "mouth_teacher": "measured"},  # trained on the measured shape
    "mouthho": MOUTHHO,  # on the held-out prediction
    "mouthglobal": {**MOUTHHO, "region_attention": "false"},
    # today's defaults as a user gets them (no region attention, the audio kept off the eyes), and the paper's
    # ablations of them (README's table since 2026-12-05)
    "defaults": DEFAULTS,
    "defuniform": {**DEFAULTS, "sampling": "uniform"},
    "defnosem": {**DEFAULTS, "semantic": "false", "sampling": "uniform"},  # no parsing head: nothing to sample by
    "defnodeform": {**DEFAULTS, "deform": "false"},
    # the cpu preset since 2026-12-05 (sixth session): rays through the frames at twice the rendered size, pinned
    "ss2": {**DEFAULTS, "train_supersample": "2"},
    "ss2uniform": {**DEFAULTS, "train_supersample": "2", "sampling": "uniform"},
    "ss2face": {**DEFAULTS, "train_supersample": "2", "face_mix": "0.5"},  # half the rays as AD-NeRF's face rays
    # the field hears the audio only through the predicted mouth shape (no learned audio code), and its uniform
    # ablation
    "ss2shape": {**DEFAULTS, "train_supersample": "2", "audio_code": "false"},
    "ss2shapeuni": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "sampling": "uniform"},
    "ss2shapenosem": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "semantic": "false",
                      "sampling": "uniform"},  # no parsing head: nothing to sample by
    "ss2shapenodeform": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "deform": "false"},
    # ss2shape trained on the landmarks' shape instead of the held-out prediction
    "ss2shapemeas": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_teacher": "measured"},
    "ss2shapemix": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_teacher": "mix",
                    "mouth_teacher_mix": "0.5"},  # half the prediction's error
    # the mouth input's regression also reads the amplitude envelope (mouth_envelope), with either teacher
    "ss2shapeenv": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true"},
    "ss2shapemeasenv": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                        "mouth_teacher": "measured"},
    "ss2shapeenvuni": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                       "sampling": "uniform"},
    "ss2shapeenvnosem": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                         "semantic": "false", "sampling": "uniform"},  # no parsing head: nothing to sample by
    "ss2shapeenvnodeform": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                            "deform": "false"},
    "ss2shapemixenv": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                       "mouth_teacher": "mix", "mouth_teacher_mix": "0.5"},
    # the mouth input's regression through a monotone calibration curve (mouth_calibrate), with either teacher
    "ss2shapeenvcal": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                       "mouth_calibrate": "true"},
    "ss2shapemeasenvcal": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                           "mouth_calibrate": "true", "mouth_teacher": "measured"},
    # with the calibration and 12000 iterations, either teacher, and the uniform ablation
    "ss2shapeenvcallong": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                           "mouth_calibrate": "true", "iters": "12000"},
    "ss2shapemeasenvcallong": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                               "mouth_calibrate": "true", "iters": "12000", "mouth_teacher": "measured"},
    "ss2shapemeasenvcallonguni": {**DEFAULTS, "train_supersample": "2", "audio_code": "false",
                                  "mouth_envelope": "true", "mouth_calibrate": "true", "iters": "12000",
                                  "mouth_teacher": "measured", "sampling": "uniform"},
    "ss2shapeenvcallonguni": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                              "mouth_calibrate": "true", "iters": "12000", "sampling": "uniform"},
    # the paper's other two ablations of the default of 2026-12-06 (fourth session; README's table)
    "ss2shapemeasenvcallongnosem": {**DEFAULTS, "train_supersample": "2", "audio_code": "false",
                                    "mouth_envelope": "true", "mouth_calibrate": "true", "iters": "12000",
                                    "mouth_teacher": "measured", "semantic": "false", "sampling": "uniform"},
    "ss2shapemeasenvcallongnodeform": {**DEFAULTS, "train_supersample": "2", "audio_code": "false",
                                       "mouth_envelope": "true", "mouth_calibrate": "true", "iters": "12000",
                                       "mouth_teacher": "measured", "deform": "false"},
    # the default of 2026-12-06 (fourth session) with a fifth of the rays in a box about each frame's mouth
    "ss2shapemeasenvcallongmbox": {**DEFAULTS, "train_supersample": "2", "audio_code": "false",
                                   "mouth_envelope": "true", "mouth_calibrate": "true", "iters": "12000",
                                   "mouth_teacher": "measured", "sampler_mouth_share": "0.2"},
    # the default of 2026-12-06 (fifth session): the envelope without the MFCC extractor's pre-emphasis, and its
    # ablations (uniform sampling, no semantic head, no torso deformation)
    "ss2shapemeasdecallong": {**DEFAULTS, **LONG, "mouth_deemphasis": "true"},
    "ss2shapemeasdecallonguni": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "sampling": "uniform"},
    "ss2shapemeasdecallongnosem": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "semantic": "false",
                                   "sampling": "uniform"},
    "ss2shapemeasdecallongnodeform": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform": "false"},
    # the default of 2026-12-06 (fifth session) with the training frames' mouth input corrected per frame; the
    # runs on record of `ref` and `refuni` had the offsets moved by every ray (commit 53d5171), those of `refm` and
    # `refmuni` by the lips' and inner mouth's rays only (today's code: all four run it now)
    "ss2shapemeasdecallongref": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "mouth_refine": "0.5"},
    "ss2shapemeasdecallongrefuni": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "mouth_refine": "0.5",
                                    "sampling": "uniform"},
    "ss2shapemeasdecallongrefm": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "mouth_refine": "0.5"},
    "ss2shapemeasdecallongrefmuni": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "mouth_refine": "0.5",
                                     "sampling": "uniform"},
    # the default of 2026-12-06 with the torso deforming also above the jaw line where the semantic head says torso
    # (deform_gate height+torso): today's default since 2026-12-07 (with the parsing's collar rule, the sure-torso
    # ramp and the cap two gate widths above the jaw; the eighth session's runs had none of these), and its ablations
    "gate": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso"},
    "gateuni": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso", "sampling": "uniform"},
    "gatenosem": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso", "semantic": "false",
                  "sampling": "uniform"},  # no semantic head: the height gate alone
    "gatenodeform": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso",
                     "deform": "false"},
    # today's default with the semantic sampler's class shares p_c ~ area_c^alpha (L_c / mean L)^beta (alpha 0.5,
    # beta 1) leaning further towards the small classes: the loss's weight squared, or the area's halved
    "gatebeta2": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso", "sampler_beta": "2"},
    "gatealpha25": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso",
                    "sampler_alpha": "0.25"},
    # today's default with the cpu preset's hash table 4x larger (2^17 entries a level, the gpu preset's), fewer
    # collisions at the fine levels where the lips and teeth are
    "gatet17": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso",
                "hash_log2_table": "17"},
    # today's default trained for 20000 iterations (the cpu preset: 12000, which end after ~11 of #16's 20 minutes here)
    "gate20k": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso", "iters": "20000"},
    # today's default with the semantic sampler's class shares at area-uniform (alpha 1, beta 0, no floor, no eye
    # rays): every training pixel equally likely, #16's "uniform ablation" (`gateuni` is AD-NeRF's face-rect sampler)
    "gatearea": {**DEFAULTS, **LONG, "mouth_deemphasis": "true", "deform_gate": "height+torso", "sampler_alpha": "1",
                 "sampler_beta": "0", "sampler_p_min": "0", "sampler_eye_share": "0"},
    # the default of 2026-12-06 trained for the whole 20 minutes of #16's protocol (12000 iterations)
    "ss2shapeenvlong": {**DEFAULTS, "train_supersample": "2", "audio_code": "false", "mouth_envelope": "true",
                        "iters": "12000"},
}
VARIANTS = {name: [arg for k, v in {**FULL, **diff}.items() for arg in (f"--{k}", v)]
            for name, diff in ABLATIONS.items()}
