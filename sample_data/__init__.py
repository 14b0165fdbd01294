"""The bundled sample: a synthetic talking-portrait clip with known poses (clip.py: frames, audio, ground truth;
scene.py: the head mesh and rasteriser; motion.py: head motion and expressions) and a synthetic voice (speech.py).
Not preprocessing: `python -m sample_data.clip` writes dataset/vids/sample.mp4 for `process_data.sh` to process.
"""
