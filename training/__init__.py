"""Training scripts of the built-in models (not part of the installed ``msa_core`` library).

They need the training data (scikit-learn's digits, Debian's word lists and Fashion-MNIST) and
scikit-learn; the library, the app and the tests only read the committed files under ``assets/``.
Run them from the repository root::

    python -m training NAME [NAME ...]      # see python -m training --help
    python -m training sweep                # the Fashion-MNIST width sweep (assets/sweep/, not in git)
"""
