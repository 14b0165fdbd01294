"""Step 3's faces on sampled frames: the subject among several people (data_util.faces)."""
from __future__ import annotations

from data_util import faces as step3_faces
from tests.av_media import astronaut_scene, make_anamorphic_video


def test_two_people_the_largest_face_is_the_subject_and_a_line_says_so(tmp_path, capsys):
    """Two astronauts, 180 and 120 px, side by side: the larger is the subject whichever the detector scores higher,
    a face found in the frame and in a tile counts once, and one warning names the subject's place."""
    import cv2

    big, _ = astronaut_scene(display_w=480, height=180, face_x=20)
    small = cv2.resize(big[:, 20:200], (120, 120), interpolation=cv2.INTER_AREA)
    big[40:160, 320:440] = small
    path = make_anamorphic_video(tmp_path / "two.mp4", big, stored_w=480, sar="1/1")
    frame = step3_faces.read_frame(path, 0.5, 480, 180)
    import mediapipe as mp

    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as far:
        faces = step3_faces.detect_faces(frame, [far])
    assert len(faces) == 2
    (_, a), (_, b) = faces
    assert a[0] < 200 < b[0] and (a[2] - a[0]) > 1.3 * (b[2] - b[0])  # the large one first
    boxes = step3_faces.find_faces(path, 0.0, 1.0, 480, 180)
    assert len(boxes) == step3_faces.N_SAMPLES and (boxes[:, 2] < 220).all()  # every sample took the large face
    err = capsys.readouterr().err
    assert f"more than one person in {step3_faces.N_SAMPLES} of {step3_faces.N_SAMPLES} sampled frames" in err
    assert err.count("\n") == 1


def test_the_subject_is_the_same_person_in_every_sample():
    """Two people of about one size, the larger one in turn; a hand; a lone face that moved far: choose_subject."""
    a = lambda x, s=60: (0.9, (x, 50, x + s, 50 + s))  # noqa: E731 - (score, box) of a face at column x
    left, right = [a(10, 62), a(300, 58)], [a(10, 58), a(300, 62)]  # the larger one alternates
    boxes, crowded = step3_faces.choose_subject([left, right, left, [a(12, 60)], right])
    assert [b[0] for b in boxes] == [10, 10, 10, 12, 10] and crowded == 4  # one person throughout
    hand = [a(10), (0.7, (100, 120, 125, 145))]  # a detection a sixth of the face's area
    assert step3_faces.choose_subject([hand, hand, hand]) == ([a(10)[1]] * 3, 0)
    boxes, crowded = step3_faces.choose_subject([[a(10)], [a(200)], [], [a(390)]])  # one face, far apart in each sample
    assert [b[0] for b in boxes] == [10, 200, 390] and crowded == 0
    assert step3_faces.choose_subject([[], []]) == ([], 0)
