"""Reading models in and writing results out."""
