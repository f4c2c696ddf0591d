"""`explain`'s text format: each example's records as a researcher reads them in a terminal (percentages
with one decimal, columns aligned)."""

from __future__ import annotations


def percent(probability: float) -> str:
    """A probability as a percentage with one decimal, right-aligned in 6 characters (`' 42.1%'`)."""
    return f"{100 * probability:5.1f}%"


def _token(entry: dict) -> str:
    return repr(entry["text"])


def render(records: list[dict]) -> str:
    """Every record (`compute.explain`'s output) as text, a blank line between records."""
    return "\n\n".join(_record(record) for record in records) + "\n"


def _record(record: dict) -> str:
    label = f"; label {record['label']}" if record.get("label") is not None else ""
    lines = [f"{record['source']} example {record['index'] + 1}  (pattern {record['pattern']}, {record['model']} "
             f"model{label})"]
    lines += _input(record)
    if "written" in record:
        return "\n".join(lines + _written(record))
    for mask in record["masks"]:
        lines += _mask(mask, len(record["masks"]))
    lines += _labels(record)
    return "\n".join(lines)


def _input(record: dict) -> list[str]:
    sets = record.get("demonstration_sets", 0)
    shown = f"  (demonstration set 1 of {sets})" if sets > 1 else ""
    lines = [f"  input     {record['text']!r}{shown}"]
    if record.get("after_word"):
        lines.append(f"  then      the label word, then {record['after_word']!r}")
    if "decoder" in record:
        lines.append(f"  decoder   {record['decoder']!r}")
    return lines


def _table(entries: list[dict], marked: int | None = None) -> list[str]:
    """Ranked tokens, one per line: rank, text, probability (`marked`: the id the decoding chose)."""
    width = max(len(_token(e)) for e in entries)
    return [f"    {n + 1:>2}  {_token(e):<{width}}  {percent(e['probability'])}"
            + ("  <- written" if e["id"] == marked else "") for n, e in enumerate(entries)]


def _mask(mask: dict, count: int) -> list[str]:
    name = f"mask {mask['mask']}" if count > 1 else "mask"
    lines = [f"  {name} (position {mask['position']}), top {len(mask['top'])}:"]
    lines += _table(mask["top"])
    words = "  ".join(f"{w['word']} {_token(w)} {percent(w['probability']).strip()}" for w in mask["label_words"])
    return lines + [f"    label-word tokens here: {words}"]


def _labels(record: dict) -> list[str]:
    labels = record["labels"]
    width = max(len(x["label"]) for x in labels + [{"label": "label"}])
    words = [", ".join(x["words"]) for x in labels]
    word_width = max(len(w) for w in words + ["words"])
    sets = len(record["content_free"])
    free = "content-free" if sets == 1 else f"content-free (mean of {sets} sets)"
    lines = [f"  {'label':<{width}}  {'words':<{word_width}}  {'p':>6}  {free:>12}  {'calibrated':>10}"]
    for x, shown in zip(labels, words):
        lines.append(f"  {x['label']:<{width}}  {shown:<{word_width}}  {percent(x['probability'])}  "
                     f"{percent(x['content_free']):>12}  {percent(x['calibrated']):>10}")
    prediction = record["prediction"]
    predicted = prediction["predicted"]
    also = f" ({predicted})" if predicted != prediction["label"] else ""
    why = ("the calibrated probabilities (`calibrate true`)" if prediction["uses"] == "calibrated"
           else "p, uncalibrated (without `calibrate true` the calibrated ones are only shown)")
    return lines + [f"  prediction {prediction['label']}{also}, from {why}"]


def _written(record: dict) -> list[str]:
    lines = [f"  written   {record['written']!r}"]
    for step in record["steps"]:
        chosen = step["chosen"]
        what = _token(chosen) if chosen is not None else "the end"
        lines.append(f"  step {step['step']}: wrote {what}, top {len(step['top'])}:")
        lines += _table(step["top"], chosen["id"] if chosen is not None else None)
    return lines + [f"  prediction {record['prediction']['predicted']!r}"]
