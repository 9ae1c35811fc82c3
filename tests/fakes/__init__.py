"""Protocol-faithful stand-ins for outside services, served on loopback addresses only."""
