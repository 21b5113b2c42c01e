"""The on-disk format of a module: file names, manifest, params, writer and reader."""
