"""The comparison report: one self-contained HTML file and the same numbers as JSON.

- ``numbers``: what the report computes from a comparison (``build``: the thresholds that meet
  the target, imperfect classes, wrong faces, operations notes) and the text formats it shares.
- ``figures``: the matplotlib Figures (confusion, scores, cost, hybrid routing, training time)
  and face thumbnails as PNG data URIs.
- ``html``: the page's sections (``SECTIONS``, ``PUBLICATION``), ``render_html`` and ``render``.
"""
