/* local placeholder (not committed) */
