"""saip_mm.utils.progress: a bar in a terminal, whole lines with rate and ETA in a log."""
import io
import re

from saip_mm.utils.progress import Progress, format_duration, track


class FakeClock:
    """A settable clock, read by the progress instead of the wall clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):

    def isatty(self) -> bool:
        return True


def test_log_file_gets_whole_lines_every_ten_percent_with_rate_and_eta():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(50, label='detecting people', unit='frames', stream=stream,
                  clock=clock) as progress:
        for _ in range(50):
            clock.now += 0.5  # 2 frames/s
            progress.update()
    text = stream.getvalue()
    assert '\r' not in text and text.endswith('\n')
    lines = text.splitlines()
    assert len(lines) == 10  # 10%, 20%, ..., 100%; nothing more at close
    for k, line in enumerate(lines, start=1):
        count = 5 * k
        left = (50 - count) / 2
        assert line == (f'detecting people: {count}/50 frames ({10 * k}%), 2.00 frames/s, '
                        f'elapsed {format_duration(count / 2)}, ETA {format_duration(left)}')


def test_log_with_wrong_or_unknown_total():
    # a container's frame count that is too high: the last line gives the real count
    stream, clock = io.StringIO(), FakeClock()
    with Progress(100, unit='frames', stream=stream, clock=clock) as progress:
        for _ in range(15):
            clock.now += 1
            progress.update()
    assert stream.getvalue().splitlines() == [
        '10/100 frames (10%), 1.00 frames/s, elapsed 0:10, ETA 1:30',
        '15 frames in 0:15, 1.00 frames/s']
    # too low: no percentage above 100, counts go on as for an unknown total
    stream, clock = io.StringIO(), FakeClock()
    with Progress(4, unit='frames', stream=stream, clock=clock, interval_s=30) as progress:
        for _ in range(70):
            clock.now += 1
            progress.update()
    lines = stream.getvalue().splitlines()
    assert not any(re.search(r'\((1[1-9]\d|[2-9]\d\d)%\)', line) for line in lines), lines
    assert lines[-3:] == ['34 frames, 1.00 frames/s, elapsed 0:34, ETA ?',
                          '64 frames, 1.00 frames/s, elapsed 1:04, ETA ?',
                          '70 frames in 1:10, 1.00 frames/s']


def test_terminal_keeps_one_redrawn_bar():
    stream, clock = Terminal(), FakeClock()
    items = list(track(range(20), label='writing images', unit='frames', stream=stream,
                       clock=clock))
    assert items == list(range(20))
    text = stream.getvalue()
    assert text.count('\n') == 1 and text.endswith('\n')  # one line, finished at the end
    frames = text[:-1].split('\r')[1:]
    assert frames[-1].startswith('writing images: [' + '#' * 30 + '] 20/20 frames')
    # the clock did not move: only the last redraw is due (no flood of redraws)
    assert len(frames) == 1


def test_duration_format():
    assert format_duration(0) == '0:00'
    assert format_duration(61.4) == '1:01'
    assert format_duration(3 * 3600 + 5) == '3:00:05'
