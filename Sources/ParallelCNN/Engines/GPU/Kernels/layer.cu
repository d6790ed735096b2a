/* layer strategy: see below */
