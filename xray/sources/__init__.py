"""Image sources: adapters that yield `Scan`s from files, folders, DICOS and the simulator."""
