"""The applications, thin layers over the library: the command line and the local web page."""
