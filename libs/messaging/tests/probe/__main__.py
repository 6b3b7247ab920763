from probe import build

build().main()
