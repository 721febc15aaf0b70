"""The bottom layer of genlab: modules here import nothing else of genlab."""
