"""``amgs demo``: the whole appliance on one machine with a SYNTHETIC study, and a load generator."""
