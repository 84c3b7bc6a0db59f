"""Radiance fields: encoders and decoders composed into density + colour."""
