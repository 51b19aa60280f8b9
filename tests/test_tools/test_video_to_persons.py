"""tools/dataset_converters/video_to_persons.py on a synthetic pedestrian video."""
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'dataset_converters' / 'video_to_persons.py'


def draw_pedestrian(img, x, y, color):
    """A ~150 px silhouette (head, torso, arms, legs) that HOG's people detector finds."""
    cv2.circle(img, (x, y + 12), 11, color, -1)
    cv2.rectangle(img, (x - 16, y + 25), (x + 16, y + 85), color, -1)
    for dx_top, dx_bottom, y0, y1, width in ((-8, -14, 85, 150, 10), (8, 14, 85, 150, 10),
                                             (-16, -24, 30, 80, 7), (16, 24, 30, 80, 7)):
        cv2.line(img, (x + dx_top, y + y0), (x + dx_bottom, y + y1), color, width)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    """40 frames, two people walking in opposite directions, far enough apart never to merge."""
    path = tmp_path_factory.mktemp('video') / 'walk.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (480, 360))
    for t in range(40):
        frame = np.full((360, 480, 3), 190, np.uint8)
        draw_pedestrian(frame, 80 + 2 * t, 100, (40, 40, 40))
        draw_pedestrian(frame, 400 - 2 * t, 120, (30, 30, 90))
        writer.write(frame)
    writer.release()
    return path


def run(*args):
    res = subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                         text=True, cwd=ROOT)
    return res


def test_layout_tracks_and_time_split(video, tmp_path):
    out = tmp_path / 'vt'
    # A user's folder named like the tool's old temporary folder must survive.
    user = tmp_path / 'vt.tmp'
    user.mkdir()
    (user / 'notes.txt').write_text('mine')
    res = run('--video', video, '--out', out, '--upscale', 1.0, '--min-track', 4,
              '--max-per-window', 3, '--crop-stride', 2)
    assert res.returncode == 0, res.stderr
    # stdout is a pipe, as under nohup or CI: whole lines every 10% with rate and ETA, no '\r'
    assert '\r' not in res.stdout and '\r' not in res.stderr
    steps = re.findall(r'^detecting people: (\d+)/40 frames \((\d+)%\), [\d.]+ frames/s, '
                       r'elapsed \d+:\d\d, ETA \d+:\d\d$', res.stdout, re.M)
    assert [(int(n), int(p)) for n, p in steps] == [(4 * k, 10 * k) for k in range(1, 11)]
    writing = re.findall(r'^writing images: \d+/\d+ frames \((\d+)%\), [\d.]+ frames/s, '
                         r'elapsed \d+:\d\d, ETA \d+:\d\d$', res.stdout, re.M)
    assert writing and writing[-1] == '100'
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_read'] == 40 and summary['split_frame'] == 20
    assert summary['train_tracks'] == 2 and summary['eval_identities'] == 2
    assert 'evaluation identities: 2' in res.stdout
    assert (user / 'notes.txt').read_text() == 'mine'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['vt', 'vt.tmp']  # no temporary left
    persons = (out / 'persons.txt').read_text().split()
    assert len(persons) == summary['person_crops'] > 0
    assert all((out / p).is_file() for p in persons)
    frames = (out / 'frames.txt').read_text().split()
    assert len(frames) == 20 and all((out / f).is_file() for f in frames)
    # training data only from the first half of the video
    assert all(int(re.search(r'_f(\d+)', p).group(1)) < 20 for p in persons)
    names = re.compile(r'^(\d{4})_c(\d)s1_(\d{6})_\d{2}\.jpg$')
    query = [names.match(p.name).groups() for p in (out / 'reid' / 'query').iterdir()]
    gallery = [names.match(p.name).groups() for p in (out / 'reid' / 'bounding_box_test').iterdir()]
    assert {q[0] for q in query} == {g[0] for g in gallery} == {'0001', '0002'}
    assert {q[1] for q in query} == {'1'} and {g[1] for g in gallery} == {'2'}
    for pid in ('0001', '0002'):
        q_frames = [int(q[2]) for q in query if q[0] == pid]
        g_frames = [int(g[2]) for g in gallery if g[0] == pid]
        assert len(q_frames) == len(g_frames) == 3
        # evaluation frames come after the training part; query window before gallery window
        assert min(q_frames) >= 20 and max(q_frames) < min(g_frames)
    img = cv2.imread(str(next((out / 'reid' / 'query').iterdir())))
    assert img.shape[0] > img.shape[1] > 40  # a person-shaped crop

    # second run: reused, nothing rewritten
    mtime = (out / 'summary.json').stat().st_mtime_ns
    again = run('--video', video, '--out', out, '--upscale', 1.0, '--min-track', 4,
                '--max-per-window', 3, '--crop-stride', 2)
    assert again.returncode == 0 and 'reusing' in again.stdout
    assert (out / 'summary.json').stat().st_mtime_ns == mtime
    # other parameters on the same folder: refused, the dataset is kept
    other = run('--video', video, '--out', out, '--upscale', 1.0, '--min-track', 5)
    assert other.returncode != 0 and 'other parameters' in other.stderr
    assert (out / 'summary.json').stat().st_mtime_ns == mtime


def test_frames_folder_and_bad_input(video, tmp_path):
    frames = tmp_path / 'frames'
    frames.mkdir()
    cap = cv2.VideoCapture(str(video))
    for i in range(40):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(frames / f'{i:04d}.jpg'), frame)
    out = tmp_path / 'from_frames'
    res = run('--frames', frames, '--out', out, '--upscale', 1.0, '--min-track', 4)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / 'summary.json').read_text())['eval_identities'] == 2
    missing = run('--video', tmp_path / 'nope.avi', '--out', tmp_path / 'x')
    assert missing.returncode != 0 and 'nope.avi' in missing.stderr


def test_out_that_is_a_file_is_refused_before_detection(video, tmp_path):
    out = tmp_path / 'dataset'
    out.write_text('a file of mine')
    res = run('--video', video, '--out', out, '--upscale', 1.0)
    assert res.returncode != 0
    assert f'--out {out} exists and is not a folder' in res.stderr
    assert 'detecting people' not in res.stdout
    assert out.read_text() == 'a file of mine'


def _empty_street(video: Path) -> Path:
    """A 6-frame video of plain grey frames: no person in it."""
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (160, 120))
    for t in range(6):
        writer.write(np.full((120, 160, 3), 100 + 10 * t, np.uint8))
    writer.release()
    return video


def test_video_without_people_fails_naming_the_thresholds(tmp_path):
    video = _empty_street(tmp_path / 'empty_street.avi')
    out = tmp_path / 'out'
    res = run('--video', video, '--out', out)
    assert res.returncode != 0
    assert f'no person detected in 6 frames of {video}: try a lower' in res.stderr
    assert '--hit-threshold (now 0.3; e.g. 0 or -0.5)' in res.stderr
    assert '--upscale (now 1.5;' in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty_street.avi']  # nothing written


def test_progress_in_a_terminal_is_one_redrawn_bar(tmp_path):
    """With stdout on a terminal (a pty) the bar is kept: redrawn with '\\r', no 10% lines."""
    video = _empty_street(tmp_path / 'street.avi')
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, str(TOOL), '--video', str(video), '--out',
                                 str(tmp_path / 'out')], stdout=terminal,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        os.close(terminal)
        terminal = None
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the tool exited and closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        err = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        os.close(controller)
        if terminal is not None:
            os.close(terminal)
    out = b''.join(chunks).decode()
    # no person in this video: detection ran over all 6 frames, then the usual error
    assert proc.returncode != 0 and 'no person detected in 6 frames' in err
    bar = re.search(r'\rdetecting people: \[#{30}\] 6/6 frames, [\d.]+ frames/s, '
                    r'elapsed \d+:\d\d, ETA \d+:\d\d *\r?\n', out)
    assert bar, out
    assert not re.search(r'\(\d+%\)', out)  # no log-style lines
