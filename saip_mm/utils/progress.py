"""Progress of a long loop, readable both in a terminal and in a log file.

A terminal gets one bar redrawn in place with ``'\\r'``. A file, a pipe or a CI log cannot
redraw: there every redraw would pile up as fragments of one endless line (what mmengine's
``ProgressBar`` does under ``nohup``). So when the stream is not a terminal, whole lines are
printed instead, at every ``step_percent`` of the total, each with the rate and the ETA; when
the total is unknown, one line every ``interval_s`` seconds.

Only the standard library is used, so any tool can use it::

    from saip_mm.utils.progress import track
    for frame in track(frames, total=n, label='detecting people', unit='frames'):
        ...
"""
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TextIO, TypeVar

T = TypeVar('T')


def format_duration(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from one hour on."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, 'isatty', None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """Count items done and report them on ``stream``.

    Args:
        total (int, optional): items expected; None or <= 0 when unknown. A total that turns
            out too small (e.g. a video container's frame count is an estimate) is treated as
            unknown from then on, so no percentage above 100 is ever printed.
        label (str): what is being done, first on every line. Defaults to ''.
        unit (str): the items' name, used in counts and rates. Defaults to 'items'.
        stream (TextIO, optional): where to write. Defaults to ``sys.stdout`` at construction.
        terminal (bool, optional): redraw one bar (True) or print whole lines (False).
            Defaults to None: ``stream.isatty()``.
        step_percent (int): in line mode, print a line each time this percentage of the
            total is passed. Defaults to 10.
        interval_s (float): in line mode with an unknown total, seconds between lines
            (a terminal's bar is redrawn at most every ``REDRAW_S``). Defaults to 30.
        clock (callable): seconds, monotonic. Defaults to ``time.monotonic`` (tests pass
            their own).
    """

    BAR_WIDTH = 30
    REDRAW_S = 0.1

    def __init__(self,
                 total: Optional[int] = None,
                 label: str = '',
                 unit: str = 'items',
                 stream: Optional[TextIO] = None,
                 terminal: Optional[bool] = None,
                 step_percent: int = 10,
                 interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < step_percent <= 100:
            raise ValueError(f'step_percent must be in (0, 100], got {step_percent}')
        self.total = total if total is not None and total > 0 else None
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stdout
        self.terminal = _is_terminal(self.stream) if terminal is None else terminal
        self.step_percent = step_percent
        self.interval_s = interval_s
        self.clock = clock
        self.count = 0
        self.start = clock()
        self._next_percent = step_percent
        self._last_print = self.start
        self._last_count_printed = -1
        self._bar_drawn = False
        self._bar_width = 0
        self._closed = False

    # ---- numbers -----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return max(self.clock() - self.start, 1e-9)

    def _rate(self) -> float:
        return self.count / self._elapsed()

    def _rate_text(self) -> str:
        rate = self._rate()
        return f'{rate:.2f} {self.unit}/s' if rate < 10 else f'{rate:.1f} {self.unit}/s'

    def _eta_text(self) -> str:
        rate = self._rate()
        if self.total is None or rate <= 0:
            return 'ETA ?'
        return f'ETA {format_duration((self.total - self.count) / rate)}'

    # ---- output ------------------------------------------------------------------------------
    def _prefix(self) -> str:
        return f'{self.label}: ' if self.label else ''

    def _write_line(self, text: str) -> None:
        self.stream.write(text + '\n')
        self.stream.flush()
        self._last_print = self.clock()
        self._last_count_printed = self.count

    def _draw_bar(self) -> None:
        if self.total is not None:
            done = int(self.BAR_WIDTH * self.count / self.total)
            bar = '#' * done + '.' * (self.BAR_WIDTH - done)
            text = (f'{self._prefix()}[{bar}] {self.count}/{self.total} {self.unit}, '
                    f'{self._rate_text()}, elapsed {format_duration(self._elapsed())}, '
                    f'{self._eta_text()}')
        else:
            text = (f'{self._prefix()}{self.count} {self.unit}, {self._rate_text()}, '
                    f'elapsed {format_duration(self._elapsed())}')
        # padded to the previous width: a shorter redraw must not leave old characters behind
        self.stream.write('\r' + text.ljust(self._bar_width))
        self.stream.flush()
        self._bar_width = len(text)
        self._bar_drawn = True
        self._last_print = self.clock()
        self._last_count_printed = self.count

    def _line(self) -> str:
        if self.total is not None:
            percent = 100 * self.count // self.total
            where = f'{self.count}/{self.total} {self.unit} ({percent}%)'
        else:
            where = f'{self.count} {self.unit}'
        return (f'{self._prefix()}{where}, {self._rate_text()}, '
                f'elapsed {format_duration(self._elapsed())}, {self._eta_text()}')

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done; print when a step (or, in a terminal, time) is due."""
        self.count += n
        if self.total is not None and self.count > self.total:
            self.total = None  # the estimate was wrong: no percentages beyond it
        if self.terminal:
            if self.clock() - self._last_print >= self.REDRAW_S or self.count == self.total:
                self._draw_bar()
        elif self.total is not None:
            if 100 * self.count >= self._next_percent * self.total:  # integers: no rounding
                self._write_line(self._line())
                # several steps passed at once give one line
                percent = 100 * self.count // self.total
                self._next_percent = (percent // self.step_percent + 1) * self.step_percent
        elif self.clock() - self._last_print >= self.interval_s:
            self._write_line(self._line())

    def close(self) -> None:
        """End the report: finish the bar's line, or print the final count if not yet shown."""
        if self._closed:
            return
        self._closed = True
        if self.count == 0:
            return  # nothing done (e.g. the input failed to open): nothing to report
        if self.terminal:
            if self._last_count_printed != self.count or not self._bar_drawn:
                self._draw_bar()
            self.stream.write('\n')
            self.stream.flush()
        elif self._last_count_printed != self.count:
            # neutral wording: close() also runs when the loop stopped on an error
            self._write_line(f'{self._prefix()}{self.count} {self.unit} in '
                             f'{format_duration(self._elapsed())}, {self._rate_text()}')

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(iterable: Iterable[T], total: Optional[int] = None, **kwargs) -> Iterator[T]:
    """Yield the items of ``iterable``, reporting progress (see :class:`Progress`).

    Args:
        iterable (Iterable): the items.
        total (int, optional): how many; taken from ``len(iterable)`` when it has one.
        **kwargs: the other arguments of :class:`Progress`.
    """
    if total is None and hasattr(iterable, '__len__'):
        total = len(iterable)  # type: ignore[arg-type]
    progress = Progress(total, **kwargs)
    try:
        for item in iterable:
            yield item
            progress.update()
    finally:
        progress.close()
