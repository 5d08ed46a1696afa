"""KFP components, one folder each (imported as `modelpress.components`).

`component.py` in each folder is the thin KFP function; the work happens in
plain library code (`steps.py` and the modules beside each component) that
never imports kfp.
"""
