"""Model families, one file each; the registry (genlab.registry) names them, so nothing imports a family by hand."""
