"""Shared Streamlit helpers of the MSA Explorer app (session state, cached resources, error display).

Only ``app.py``, ``pages/`` and ``ui/`` import Streamlit; every computation lives in ``msa_core``.
"""
