"""The engine layer: grid plans, the lifted kernel and its partition search, chunked evaluation,
netCDF datasets, Hydra schemas, and multi-process runs. Imports physics and catalogue only."""
