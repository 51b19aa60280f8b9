#!/usr/bin/env python
"""Pedestrian video → a person dataset for SAIP pretraining and a ReID evaluation split.

People are detected with OpenCV's HOG people detector and linked over frames into tracks by
IoU. The video is split in time: the first part (``--train-fraction``) gives the pretraining
data, the rest the evaluation, so the evaluation measures transfer, not memory.

Output tree under ``--out``::

    persons/            person crops of the training part (LUPerson-style, PersonImageDataset)
    persons.txt         their list, one path per line relative to --out
    frames/             full frames of the training part (multi-person CSS backgrounds)
    frames.txt
    reid/               Market-1501 layout, from the evaluation part only
      bounding_box_train/   (empty: the demo never trains on identities)
      query/            <pid>_c1s1_<frame>_00.jpg  first time window of each track
      bounding_box_test/ <pid>_c2s1_<frame>_00.jpg  last time window of each track
    summary.json        counts and the parameters used

One track is one identity; its query and gallery images come from separate time windows,
written as cameras c1 and c2 so the standard protocol (which drops same-camera matches) keeps
them apart. A second run with the same parameters reuses what exists. The dataset is written
into a fresh private folder beside ``--out`` (``.<name>.XXXX.partial``) and renamed to ``--out``
when complete; a failed run removes only that folder. An existing ``--out`` that is a file, or a
non-empty folder that is not a dataset of this tool, is refused before detection starts. A video
in which HOG finds no person is an error that names the thresholds to try.

Progress (:mod:`saip_mm.utils.progress`): a bar in a terminal; in a log file (``nohup``, CI)
one whole line every 10% of the frames, with the rate and the ETA.

    python tools/dataset_converters/video_to_persons.py --out data/vtest
    python tools/dataset_converters/video_to_persons.py --video my.mp4 --out data/mine
    python tools/dataset_converters/video_to_persons.py --frames my_frames/ --out data/mine
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
from types import ModuleType
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

VTEST_SYSTEM = '/usr/share/doc/opencv-doc/examples/data/vtest.avi'
VTEST_IN_DEB = 'usr/share/doc/opencv-doc/examples/data/vtest.avi'
DEFAULT_CACHE = osp.join(os.environ.get('SAIP_CACHE', osp.expanduser('~/.cache/saip_mm')),
                         'opencv-doc')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Pedestrian video to a SAIP person dataset')
    src = parser.add_mutually_exclusive_group()
    src.add_argument('--video', help='video file (default: vtest.avi from Debian opencv-doc)')
    src.add_argument('--frames', help='folder of frames (jpg/png, sorted by name)')
    parser.add_argument('--out', default='data/vtest', help='output folder')
    parser.add_argument('--train-fraction', type=float, default=0.5,
                        help='first part of the video used for pretraining data')
    parser.add_argument('--frame-step', type=int, default=1, help='detect every N-th frame')
    parser.add_argument('--upscale', type=float, default=1.5,
                        help='resize frames before detection; HOG needs people >= 128 px tall')
    parser.add_argument('--hit-threshold', type=float, default=0.3,
                        help='HOG SVM score threshold (higher: fewer, surer detections)')
    parser.add_argument('--iou', type=float, default=0.3, help='IoU to link a detection to a track')
    parser.add_argument('--max-gap', type=int, default=3,
                        help='frames a track may miss before it ends')
    parser.add_argument('--min-track', type=int, default=8,
                        help='detections a track needs to become an identity')
    parser.add_argument('--max-per-window', type=int, default=4,
                        help='query / gallery images per identity')
    parser.add_argument('--crop-stride', type=int, default=2,
                        help='keep every N-th detection of a track as a training crop')
    parser.add_argument('--cache', default=DEFAULT_CACHE, help='where opencv-doc is unpacked')
    return parser.parse_args(argv)


def find_vtest(cache: str) -> str:
    """The path of vtest.avi: installed, cached, or fetched with apt-get download + dpkg-deb."""
    for path in (VTEST_SYSTEM, osp.join(cache, VTEST_IN_DEB)):
        if osp.isfile(path):
            return path
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        print(f'fetching opencv-doc (vtest.avi) into {cache} ...', flush=True)
        try:
            subprocess.run(['apt-get', 'download', 'opencv-doc'], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deb = glob.glob(osp.join(tmp, 'opencv-doc_*.deb'))[0]
            subprocess.run(['dpkg-deb', '-x', deb, cache], check=True)
        except (OSError, subprocess.CalledProcessError, IndexError) as e:
            raise RuntimeError(
                'could not fetch vtest.avi: `apt-get download opencv-doc` failed '
                f'({e}). Install opencv-doc, or pass --video PATH / --frames DIR.') from e
    return osp.join(cache, VTEST_IN_DEB)


def load_progress() -> ModuleType:
    """``saip_mm.utils.progress``, read from the installed package without running
    ``saip_mm/__init__.py``: that imports the whole model stack (about 8 s), and this tool needs
    only the progress report, which uses the standard library alone."""
    spec = importlib.util.find_spec('saip_mm')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('saip_mm is not installed in this Python environment: run '
                           'tools/install.sh, or use the interpreter of its venv')
    path = osp.join(list(spec.submodule_search_locations)[0], 'utils', 'progress.py')
    module_spec = importlib.util.spec_from_file_location('_saip_mm_progress', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _frame_files(frames_dir: str) -> List[str]:
    return sorted(f for f in glob.glob(osp.join(frames_dir, '*'))
                  if f.lower().endswith(('.jpg', '.jpeg', '.png', '.bmp')))


def count_frames(video: Optional[str], frames_dir: Optional[str]) -> Optional[int]:
    """Frames to expect, for the progress report: exact for a folder, the container's
    estimate for a video, None when unknown (the reader fails clearly later)."""
    if frames_dir is not None:
        return len(_frame_files(frames_dir))
    if not osp.isfile(video):
        return None
    cap = cv2.VideoCapture(video)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def read_frames(video: Optional[str], frames_dir: Optional[str]) -> Iterator[np.ndarray]:
    """Yield BGR frames from a video file or a folder of images, failing clearly."""
    if frames_dir is not None:
        files = _frame_files(frames_dir)
        if not files:
            raise FileNotFoundError(f'no jpg/png frames in {frames_dir}')
        for f in files:
            img = cv2.imread(f)
            if img is None:
                raise ValueError(f'cannot decode frame {f}')
            yield img
        return
    if not osp.isfile(video):
        raise FileNotFoundError(f'video not found: {video}')
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise ValueError(f'OpenCV cannot open the video {video}')
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
    finally:
        cap.release()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    ix = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.


class PeopleDetector:
    """OpenCV's default HOG + linear SVM people detector, with non-maximum suppression."""

    def __init__(self, upscale: float = 1.5, hit_threshold: float = 0.3) -> None:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = upscale
        self.hit_threshold = hit_threshold

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) as x1, y1, x2, y2 in frame pixels."""
        img = frame if self.upscale == 1 else cv2.resize(
            frame, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        rects, scores = self.hog.detectMultiScale(img, hitThreshold=self.hit_threshold,
                                                  winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 4), dtype=np.float32)
        boxes = np.asarray(rects, dtype=np.float32)
        boxes[:, 2:] += boxes[:, :2]
        boxes /= self.upscale
        keep = cv2.dnn.NMSBoxes([list(map(float, (x1, y1, x2 - x1, y2 - y1)))
                                 for x1, y1, x2, y2 in boxes],
                                np.asarray(scores, dtype=np.float32).ravel().tolist(), 0.0, 0.4)
        return boxes[np.asarray(keep, dtype=int).ravel()]


def link_tracks(detections: List[Tuple[int, np.ndarray]], iou_thr: float,
                max_gap: int) -> List[List[Tuple[int, np.ndarray]]]:
    """Greedy IoU linking of per-frame boxes into tracks.

    Args:
        detections: (frame index, boxes (N, 4)) in frame order.
        iou_thr: minimum IoU between a track's last box and a new box.
        max_gap: frames a track may go undetected before it is closed.

    Returns:
        list of tracks, each a list of (frame index, box).
    """
    active: List[List[Tuple[int, np.ndarray]]] = []
    finished = []
    for frame_idx, boxes in detections:
        still = []
        for track in active:
            (finished if frame_idx - track[-1][0] > max_gap + 1 else still).append(track)
        active = still
        pairs = sorted(((iou(t[-1][1], b), ti, bi) for ti, t in enumerate(active)
                        for bi, b in enumerate(boxes)), key=lambda p: -p[0])
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score < iou_thr or ti in used_t or bi in used_b:
                continue
            active[ti].append((frame_idx, boxes[bi]))
            used_t.add(ti)
            used_b.add(bi)
        active += [[(frame_idx, b)] for bi, b in enumerate(boxes) if bi not in used_b]
    return finished + active


def crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    x1, y1 = int(max(0, round(x1))), int(max(0, round(y1)))
    x2, y2 = int(min(w, round(x2))), int(min(h, round(y2)))
    return frame[y1:y2, x1:x2]


def _write_dataset(folder: str, source: dict,
                   writes: Dict[int, List[Tuple[str, Optional[np.ndarray]]]],
                   persons: List[str], frame_list: List[str]) -> None:
    """Write the crops, frames and list files of the dataset into ``folder``."""
    for sub in ('persons', 'frames', 'reid/bounding_box_train', 'reid/query',
                'reid/bounding_box_test'):
        os.makedirs(osp.join(folder, sub))
    Progress = load_progress().Progress
    print('writing images ...', flush=True)
    last = max(writes) + 1 if writes else 0  # frames after the last write are not read
    with Progress(last, label='writing images', unit='frames') as progress:
        for idx, frame in enumerate(read_frames(source.get('video'), source.get('frames'))):
            if idx >= last:
                break
            for rel, box in writes.get(idx, []):
                path = osp.join(folder, rel)
                if not cv2.imwrite(path, frame if box is None else crop(frame, box)):
                    raise OSError(f'cannot write {path}')
            progress.update()
    for name, items in (('persons.txt', persons), ('frames.txt', frame_list)):
        with open(osp.join(folder, name), 'w') as f:
            f.write('\n'.join(items) + '\n')


def convert(args: argparse.Namespace) -> Dict:
    """Run detection, tracking and writing; return the summary."""
    source = dict(frames=osp.abspath(args.frames)) if args.frames else dict(
        video=osp.abspath(args.video or find_vtest(args.cache)))
    params = dict(source=source, **{k: getattr(args, k) for k in (
        'train_fraction', 'frame_step', 'upscale', 'hit_threshold', 'iou', 'max_gap',
        'min_track', 'max_per_window', 'crop_stride')})
    if osp.lexists(args.out) and not osp.isdir(args.out):
        raise FileExistsError(f'--out {args.out} exists and is not a folder; choose a folder '
                              'path (nothing is overwritten).')
    summary_path = osp.join(args.out, 'summary.json')
    if osp.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        if summary.get('params') == params:
            print(f'{args.out} is up to date (same source and parameters): reusing it.')
            summary['reused'] = True
            return summary
        raise FileExistsError(
            f'{args.out} holds a dataset made with other parameters; choose another --out or '
            'delete that folder yourself (it is never overwritten).')
    if osp.isdir(args.out) and os.listdir(args.out):
        raise FileExistsError(f'{args.out} exists and is not a finished dataset from this tool; '
                              'choose another --out (nothing is overwritten).')

    Progress = load_progress().Progress
    detector = PeopleDetector(args.upscale, args.hit_threshold)
    detections = []
    n_det = n_frames = 0
    print('detecting people ...', flush=True)
    # a bar in a terminal, whole lines every 10% (rate, ETA) in a log file
    with Progress(count_frames(source.get('video'), source.get('frames')),
                  label='detecting people', unit='frames') as progress:
        for idx, frame in enumerate(read_frames(source.get('video'), source.get('frames'))):
            n_frames += 1
            if idx % args.frame_step == 0:
                boxes = detector(frame)
                n_det += len(boxes)
                detections.append((idx, boxes))
            progress.update()
    src_name = source.get('video') or source.get('frames')
    if n_frames == 0:
        raise ValueError(f'no frames read from {source}')
    if n_det == 0:
        raise ValueError(
            f'no person detected in {n_frames} frames of {src_name}: try a lower '
            f'--hit-threshold (now {args.hit_threshold}; e.g. 0 or -0.5) or a larger --upscale '
            f'(now {args.upscale}; HOG finds people at least 128 px tall after upscaling), or '
            f'--frame-step 1 (now {args.frame_step}).')

    split = int(n_frames * args.train_fraction)
    train_tracks = link_tracks([d for d in detections if d[0] < split], args.iou, args.max_gap)
    eval_tracks = [t for t in link_tracks([d for d in detections if d[0] >= split], args.iou,
                                          args.max_gap) if len(t) >= args.min_track]

    # What to write, per frame: (relative path, box or None for the whole frame).
    writes: Dict[int, List[Tuple[str, Optional[np.ndarray]]]] = {}
    persons, frame_list = [], []
    for ti, track in enumerate(train_tracks):
        for fi, box in track[::args.crop_stride]:
            if box[3] - box[1] < 32 or box[2] - box[0] < 16:
                continue
            rel = f'persons/t{ti:04d}_f{fi:06d}.jpg'
            writes.setdefault(fi, []).append((rel, box))
            persons.append(rel)
    for fi in range(0, split, max(1, args.frame_step)):
        rel = f'frames/f{fi:06d}.jpg'
        writes.setdefault(fi, []).append((rel, None))
        frame_list.append(rel)
    if not persons:
        raise ValueError(
            f'{n_det} detections but no person crop in the training part (first '
            f'{args.train_fraction:g} of the video) of {src_name}: try a lower --hit-threshold '
            f'(now {args.hit_threshold}), a larger --upscale (now {args.upscale}), a lower '
            f'--iou (now {args.iou}) or a larger --train-fraction.')
    n_query = n_gallery = 0
    for pid, track in enumerate(eval_tracks, start=1):
        half = len(track) // 2
        # First and last time windows of the track; spread the picks over each window.
        for folder, cam, window in (('query', 1, track[:half]),
                                    ('bounding_box_test', 2, track[half:])):
            picks = np.linspace(0, len(window) - 1, min(args.max_per_window, len(window)))
            for k, wi in enumerate(sorted(set(int(round(p)) for p in picks))):
                fi, box = window[wi]
                writes.setdefault(fi, []).append(
                    (f'reid/{folder}/{pid:04d}_c{cam}s1_{fi:06d}_{k:02d}.jpg', box))
                n_query += folder == 'query'
                n_gallery += folder != 'query'

    # A fresh private folder beside --out (same file system, so the final rename is atomic);
    # it is ours alone, so it is the only thing removed on failure.
    parent = osp.dirname(osp.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    tmp_out = tempfile.mkdtemp(prefix=f'.{osp.basename(osp.abspath(args.out))}.',
                               suffix='.partial', dir=parent)
    try:
        _write_dataset(tmp_out, source, writes, persons, frame_list)
        summary = dict(params=params, frames_read=n_frames, split_frame=split,
                       detections=n_det, train_tracks=len(train_tracks),
                       eval_identities=len(eval_tracks), person_crops=len(persons),
                       background_frames=len(frame_list), query_images=n_query,
                       gallery_images=n_gallery)
        with open(osp.join(tmp_out, 'summary.json'), 'w') as f:
            json.dump(summary, f, indent=2)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_out, 0o777 & ~umask)  # mkdtemp makes it private (0700)
        if osp.isdir(args.out):
            os.rmdir(args.out)  # empty (checked above)
        os.replace(tmp_out, args.out)  # the dataset appears complete or not at all
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    summary['reused'] = False
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        summary = convert(args)
    except (OSError, ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
    print(f'frames read: {summary["frames_read"]} (training part: first {summary["split_frame"]})')
    print(f'detections: {summary["detections"]}; training tracks: {summary["train_tracks"]}; '
          f'evaluation identities: {summary["eval_identities"]}')
    print(f'written: {summary["person_crops"]} person crops, {summary["background_frames"]} '
          f'background frames, {summary["query_images"]} query + {summary["gallery_images"]} '
          f'gallery images -> {args.out}')


if __name__ == '__main__':
    main()
