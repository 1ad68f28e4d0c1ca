"""`ifguide mask browse`: a Textual browser over a mask's ranked documents.

Keys: ↑/↓ or n/p move through the ranking, g jumps to a rank, / searches the decoded text
(or `#ID` for a token id) from the next document on, N searches again, s toggles the score heat,
q quits. This module imports Textual at load time, so `cli/mask.py` imports it only inside `browse`.
"""

from __future__ import annotations

import sys
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.render import MaskInspector, ranked_table, rich_text


class MaskBrowser(App):
    """Ranked documents on the left, the highlighted document on the right, a prompt for jumps and searches."""

    TITLE = "ifguide mask browse"
    CSS = """
    #ranked { width: 46; border-right: solid $primary; }
    #docpane { padding: 0 1; }
    #title { text-style: bold; margin-bottom: 1; }
    #prompt { dock: bottom; }
    .hidden { display: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "next", "Next"),
        Binding("p", "previous", "Previous"),
        Binding("g", "goto", "Jump to rank"),
        Binding("slash", "search", "Search"),
        Binding("N", "search_again", "Search again", show=False),
        Binding("s", "toggle_heat", "Score heat"),
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, inspector: MaskInspector, top: int = 1000) -> None:
        super().__init__()
        self.insp = inspector
        self.rows = min(max(1, top), inspector.docs)  # documents listed in the ranked table
        self.rank = 0
        self.heat = False
        self.search_term: str | None = None
        self.prompt_mode: str | None = None  # "goto" | "search"
        self.doc_text: Text | None = None  # the rich Text shown (read by tests)
        self.status = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield DataTable(id="ranked", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="docpane"):
                yield Static(id="title")
                yield Static(id="doc")
        yield Input(id="prompt", classes="hidden")
        yield Footer()

    def on_mount(self) -> None:
        s = self.insp.summary
        self.sub_title = (f"mask {self.insp.art.id} · τ={s.get('threshold_value', float('nan')):.4g} · "
                          f"{s.get('tokens_selected', '?')} tokens in {s.get('documents_selected', '?')} documents")
        table = self.query_one("#ranked", DataTable)
        headers, cells = ranked_table(self.insp.top(self.rows), without=("strength", "source"))
        table.add_columns(*headers)
        for row in cells:
            table.add_row(*row)
        table.focus()
        self.show_rank(0)

    # ---- showing ----------------------------------------------------------------------
    def show_rank(self, rank: int) -> None:
        """Show the document at `rank` (clamped to the ranking) and keep the table's cursor on it."""
        rank = max(0, min(self.insp.docs - 1, rank))
        self.rank = rank
        view = self.insp.view(int(self.insp.ranking[rank]), with_scores=self.heat)
        self.doc_text = rich_text(view, heat=self.heat, search=self.search_term)
        title = self.insp.header(view)
        if self.heat and view.scores is None:
            title += " · (scores not available)"
        self.query_one("#title", Static).update(title)
        self.query_one("#doc", Static).update(self.doc_text)
        table = self.query_one("#ranked", DataTable)
        if rank < self.rows and table.cursor_row != rank:
            table.move_cursor(row=rank)

    def on_data_table_row_highlighted(self, event) -> None:
        if event.cursor_row is not None and event.cursor_row != self.rank:
            self.show_rank(event.cursor_row)

    # ---- actions ----------------------------------------------------------------------
    def action_next(self) -> None:
        self.show_rank(self.rank + 1)

    def action_previous(self) -> None:
        self.show_rank(self.rank - 1)

    def action_toggle_heat(self) -> None:
        self.heat = not self.heat
        self.show_rank(self.rank)

    def action_goto(self) -> None:
        self._open_prompt("goto", f"jump to rank (0–{self.insp.docs - 1}), Enter to go, Esc to cancel")

    def action_search(self) -> None:
        self._open_prompt("search", "search a word or #token-id from the next document on, Enter to go, Esc to cancel")

    def action_search_again(self) -> None:
        if self.search_term:
            self._search(self.search_term)

    def action_cancel(self) -> None:
        self._close_prompt()

    # ---- the prompt -------------------------------------------------------------------
    def _open_prompt(self, mode: str, placeholder: str) -> None:
        self.prompt_mode = mode
        prompt = self.query_one("#prompt", Input)
        prompt.placeholder = placeholder
        prompt.value = ""
        prompt.remove_class("hidden")
        prompt.focus()

    def _close_prompt(self) -> None:
        self.query_one("#prompt", Input).add_class("hidden")
        self.prompt_mode = None
        self.query_one("#ranked", DataTable).focus()

    def on_input_submitted(self, event) -> None:
        value = event.value.strip()
        mode = self.prompt_mode
        self._close_prompt()
        if not value:
            return
        if mode == "goto":
            self._goto(value)
        elif mode == "search":
            self.search_term = value
            self._search(value)

    def _goto(self, value: str) -> None:
        if not value.isdigit() or int(value) >= self.insp.docs:
            self._warn(f"not a rank: {value!r} (0–{self.insp.docs - 1})")
            return
        self.show_rank(int(value))

    def _search(self, term: str) -> None:
        """The next document from the current one on whose text contains `term`, wrapping around once."""
        found = self.insp.find(term, self.rank + 1)
        if found is None and self.rank > 0:
            found = self.insp.find(term, 0, limit=self.rank + 1)  # wrap around
        if found is None:
            self._warn(f"{term!r} not found")
            self.show_rank(self.rank)
            return
        self.status = f"{term!r} found at rank {found}"
        self.show_rank(found)

    def _warn(self, message: str) -> None:
        self.status = message
        self.notify(message, severity="warning")


def build_app(inspector: MaskInspector, top: int = 1000) -> MaskBrowser:
    """The Textual App (separate from running it, so tests can drive it headless with `App.run_test`)."""
    return MaskBrowser(inspector, top)


def run_browser(inspector: MaskInspector, top: int = 1000) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise IfguideError("`ifguide mask browse` needs an interactive terminal",
                           hint="use `ifguide mask show MASK --rank N` (or --json) in scripts and pipes", exit_code=2)
    build_app(inspector, top).run()
