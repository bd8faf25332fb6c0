"""The experiments: every method on the same task, data, seeds and budget.

`compare` runs the methods (`swarm`, the `fedavg`, `local` and `pooled`
baselines, and `personalise`d models) and scores them with `yardsticks` into
`results`; `scenarios` loads whole experiments from TOML (the shipped ones in
`scenario_files/`); `chaos` kills and restarts real-site peer processes.
"""
