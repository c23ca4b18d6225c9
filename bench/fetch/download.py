# download.py: the tutorial's requests + threads image downloader
# (python-network-programming.md): fetch the JSON index, start one Thread per
# picUrl, each writes its file. Changed only where the tutorial hard-codes
# things: the API URL and output directory come from argv, and the handler
# fetches self.url (the tutorial's getHTMLText is unused there and dropped).
# Usage: python3 download.py API_URL OUT_DIR. Benchmark peer, bench/ only.
import os
import sys
from threading import Thread

import requests


class DownloadHanlder(Thread):

    def __init__(self, url, out):
        super().__init__()
        self.url = url
        self.out = out

    def run(self):
        filename = self.url[self.url.rfind('/') + 1:]
        resp = requests.get(self.url)
        with open(os.path.join(self.out, filename), 'wb') as f:
            f.write(resp.content)


def main():
    resp = requests.get(sys.argv[1])
    data_model = resp.json()
    for mm_dict in data_model['newslist']:
        url = mm_dict['picUrl']
        DownloadHanlder(url, sys.argv[2]).start()


if __name__ == '__main__':
    main()
