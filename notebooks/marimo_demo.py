"""Speak into a marimo notebook; a cell that reads the transcript re-runs by itself.

Run it with ``marimo edit notebooks/marimo_demo.py`` (or ``marimo run`` for the app
view). Without a ``SONIOX_API_KEY`` the offline local engine transcribes (install
``soniox-widget[local]``).
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    from soniox_widget import SonioxRecorder

    return SonioxRecorder, mo


@app.cell
def _(SonioxRecorder, mo):
    # mo.ui.anywidget makes the widget a marimo UI element: cells that read
    # recorder.value re-run when the browser changes it, e.g. when a recording ends.
    recorder = mo.ui.anywidget(SonioxRecorder())
    recorder
    return (recorder,)


@app.cell
def _(mo, recorder):
    import html

    # The final text of the last finished recording ("" before the first one).
    last_recording = recorder.value["saved_transcript"].get("text", "")
    mo.md(
        f"**Last recording:** <span class='last-recording'>{html.escape(last_recording)}</span>"
        if last_recording
        else "*Press Record, speak, press Stop: the text shows up here.*"
    )
    return (last_recording,)


@app.cell
def _(last_recording):
    # Ordinary Python on the transcript; re-runs with the cell above.
    words = last_recording.split()
    {"words": len(words), "longest": max(words, key=len) if words else None}
    return


if __name__ == "__main__":
    app.run()
