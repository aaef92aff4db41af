"""Stand-ins for published OPEA images: opea-comps' own register_microservice, the published handlers' signatures."""
