"""The report of a run: metrics as JSON and CSV, PNG plots (learning curves, parity, training curves) and
one self-contained HTML page; and the transfer studies' gates. Read from a finished run's directory."""
