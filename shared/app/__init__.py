"""The common layer: everything the SCF functions share. Unpacked to /opt on SCF."""
